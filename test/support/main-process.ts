import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, superuser } from "./faults.ts";

/*
 * src/main.ts as a user runs it (`npm start`): a child process configured
 * through its environment, stopped by signals. Tests kill only the
 * processes they started (stopAll), by their pid.
 */

const root = fileURLToPath(new URL("../../", import.meta.url));
const START_DEADLINE_MS = 60_000;

/** A running src/main.ts. */
export interface MainProcess {
  child: ChildProcess;
  url: string;
  /** Everything it wrote so far. */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

const running = new Set<MainProcess>();

/** SIGKILLs every process started here that still runs. */
export async function stopAll(): Promise<void> {
  for (const p of running) {
    p.child.kill("SIGKILL");
    await p.exited;
  }
}

/** Starts src/main.ts with `env` (plus PATH, HOME, a free PORT) and waits until it is SERVING. */
export async function startMain(env: Record<string, string>): Promise<MainProcess> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawn(process.execPath, ["--import", "./scripts/require-node.mjs", "src/main.ts"], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), HOST: "127.0.0.1", PORT: String(port), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    const proc: MainProcess = {
      child,
      url: `http://127.0.0.1:${port}`,
      output: () => output,
      exited: new Promise((resolve) => child.once("exit", (code) => resolve(code))),
    };
    running.add(proc);
    let exited = false;
    void proc.exited.then(() => {
      exited = true;
      running.delete(proc);
    });
    const deadline = Date.now() + START_DEADLINE_MS;
    while (!(await serving(proc.url))) {
      if (exited) {
        if (attempt < 3 && output.includes("EADDRINUSE")) break;
        throw new Error(`src/main.ts exited before serving:\n${output}`);
      }
      if (Date.now() > deadline) throw new Error(`not SERVING within ${START_DEADLINE_MS} ms:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    if (!exited) return proc;
  }
}

/** One health Check; false while the port is closed or the server not serving. */
export async function serving(url: string): Promise<boolean> {
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

/** The exit code, failing after `ms`. */
export async function exitWithin(proc: MainProcess, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      proc.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`still running after ${ms} ms:\n${proc.output()}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Where a server process keeps its data: a fresh PostgreSQL database, or a PGlite folder. */
export interface Store {
  env: Record<string, string>;
  /** SQL as the owner on PostgreSQL (undefined on PGlite). */
  sql?: <T = Record<string, unknown>>(query: string) => Promise<T[]>;
  drop(): Promise<void>;
}

/** A fresh store: a database on TEST_DATABASE_URL's server when set, else a temporary PGlite folder. */
export async function freshStore(name: string): Promise<Store> {
  const dataDir = mkdtempSync(join(tmpdir(), "agent-platform-reliability-"));
  const admin = process.env.TEST_DATABASE_URL;
  if (!admin) return { env: { DATA_DIR: dataDir }, drop: async () => rmSync(dataDir, { recursive: true, force: true }) };
  const db = `agent_platform_${name}_${process.env.VITEST_POOL_ID ?? "0"}_${process.pid}`;
  await superuser(admin, [`drop database if exists ${db} with (force)`], [`create database ${db}`]);
  const url = new URL(admin);
  url.pathname = `/${db}`;
  return {
    env: { DATA_DIR: dataDir, DATABASE_URL: url.toString() },
    sql: (query) => superuser(url.toString(), [query]),
    async drop() {
      await superuser(admin, [`drop database if exists ${db} with (force)`]);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
