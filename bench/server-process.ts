import { spawn, type ChildProcess } from "node:child_process";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { freePort } from "./lib/ports.ts";

const root = fileURLToPath(new URL("../", import.meta.url));

/** src/main.ts running as a process of its own, so no client's work counts as the server's. */
export interface BenchServer {
  url: string;
  child: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** What it wrote to stderr (the last 500 kB at least). */
  log(): string;
  /** SIGTERM, then waits for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts src/main.ts on a free port of 127.0.0.1 with only `env` (plus PATH,
 * HOME, HOST and PORT) and waits until health answers SERVING. `nodeFlags`
 * go before the script (e.g. --cpu-prof); `stdout` says where its stdout goes;
 * `timeoutMs` (180 s: a first PGlite start on a loaded machine can pass 60 s) bounds the wait.
 */
export async function startBenchServer(
  env: Record<string, string>,
  {
    nodeFlags = [],
    stdout = "ignore",
    timeoutMs = 180_000,
  }: { nodeFlags?: string[]; stdout?: "ignore" | "inherit"; timeoutMs?: number } = {},
): Promise<BenchServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeFlags, "--import", "./scripts/require-node.mjs", "src/main.ts"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), HOST: "127.0.0.1", PORT: String(port), ...env },
    stdio: ["ignore", stdout, "pipe"],
  });
  let log = "";
  child.stderr!.on("data", (c: Buffer) => {
    log += c.toString();
    if (log.length > 1_000_000) log = log.slice(-500_000);
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const server: BenchServer = {
    url: `http://127.0.0.1:${port}`,
    child,
    exited,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
  for (const started = Date.now(); !(await serving(server.url)); ) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}:\n${log}`);
    if (Date.now() - started > timeoutMs) {
      await server.stop();
      throw new Error(`the server was not SERVING within ${timeoutMs / 1000} s:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return server;
}

async function serving(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
      signal: AbortSignal.timeout(2_000),
    });
    return res.ok && ((await res.json()) as { status?: string }).status === "SERVING";
  } catch {
    return false;
  }
}
