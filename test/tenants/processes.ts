// Servers as separate processes of src/main.ts on one database (the pattern
// of test/wire/process.test.ts): for limits that must hold across instances.
import { spawn, type ChildProcess } from "node:child_process";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import pg from "pg";

const root = fileURLToPath(new URL("../../", import.meta.url));
const START_DEADLINE_MS = 60_000;

/** A running src/main.ts. */
export interface MainProcess {
  child: ChildProcess;
  url: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL when it has not exited within 15 s. */
  stop(): Promise<void>;
}

/**
 * Starts src/main.ts with only `env` (plus PATH and HOME) on a port picked
 * free, and waits until health answers SERVING; retries when another process
 * took the port meanwhile.
 */
export async function startMain(env: Record<string, string>): Promise<MainProcess> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const proc = spawnMain({ ...env, HOST: "127.0.0.1", PORT: String(port) });
    const deadline = Date.now() + START_DEADLINE_MS;
    let exited = false;
    void proc.exited.then(() => (exited = true));
    while (!(await serving(proc.url))) {
      if (exited) {
        if (attempt < 3 && proc.output().includes("EADDRINUSE")) break;
        throw new Error(`src/main.ts exited before serving:\n${proc.output()}`);
      }
      if (Date.now() > deadline) {
        await proc.stop();
        throw new Error(`not SERVING within ${START_DEADLINE_MS} ms:\n${proc.output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (!exited) return proc;
  }
}

function spawnMain(env: Record<string, string>): MainProcess {
  const child = spawn(process.execPath, ["--import", "./scripts/require-node.mjs", "src/main.ts"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    url: `http://127.0.0.1:${env.PORT}`,
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
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

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Creates a fresh PostgreSQL database next to TEST_DATABASE_URL's; returns its URL and how to drop it. */
export async function freshDatabase(name: string): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = process.env.TEST_DATABASE_URL!;
  await admin(adminUrl, [`drop database if exists ${name} with (force)`, `create database ${name}`]);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(adminUrl, [`drop database if exists ${name} with (force)`]) };
}

async function admin(url: string, statements: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}
