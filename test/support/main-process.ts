import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { migrateUp, openDatabase } from "../../src/database.ts";
import { freePort, superuser } from "./faults.ts";
import { TEST_ENV } from "./server.ts";

/*
 * src/main.ts as a user runs it (`npm start`): a child process configured
 * through its environment, stopped by signals; for tests of the process
 * itself and of several instances on one database. Tests kill only the
 * processes they started (stopAll), by their pid.
 */

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

const running = new Set<MainProcess>();

/** SIGKILLs every process started here that still runs. */
export async function stopAll(): Promise<void> {
  for (const p of running) {
    p.child.kill("SIGKILL");
    await p.exited;
  }
}

/**
 * Spawns `node --import ./scripts/require-node.mjs src/main.ts` with only
 * `env` (plus PATH, HOME and TEST_ENV), under `node` (this Node unless said).
 */
export function spawnMain(env: Record<string, string>, node = process.execPath): MainProcess {
  const child = spawn(node, ["--import", "./scripts/require-node.mjs", "src/main.ts"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), GRPC_PATH: process.env.GRPC_PATH ?? "grpc-js", ...TEST_ENV, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const proc: MainProcess = {
    child,
    url: `http://127.0.0.1:${env.PORT ?? ""}`,
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
  running.add(proc);
  void exited.then(() => running.delete(proc));
  return proc;
}

/**
 * Starts src/main.ts with `env` on a port picked free and waits until health
 * answers SERVING (and `ready`, when given, holds). Between picking the port
 * and binding it (seconds: the database opens first) another process may
 * take it; then the server exits with EADDRINUSE and is started again.
 */
export async function startMain(
  env: Record<string, string>,
  ready: (proc: MainProcess, port: number) => boolean = () => true,
): Promise<MainProcess> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const proc = spawnMain({ HOST: "127.0.0.1", PORT: String(port), ...env });
    let exited = false;
    void proc.exited.then(() => (exited = true));
    const deadline = Date.now() + START_DEADLINE_MS;
    while (!(ready(proc, port) && (await serving(proc.url)))) {
      if (exited) {
        if (attempt < 3 && proc.output().includes("EADDRINUSE")) break;
        throw new Error(`src/main.ts exited before serving:\n${proc.output()}`);
      }
      if (Date.now() > deadline) {
        await proc.stop();
        throw new Error(`not SERVING within ${START_DEADLINE_MS} ms:\n${proc.output()}`);
      }
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

/**
 * A fresh store: a database on TEST_DATABASE_URL's server when `postgres`
 * (by default: when the tests run on PostgreSQL; `migrated` applies the
 * migrations to it first), else a temporary PGlite folder. Either way
 * DATA_DIR is a fresh folder of its own. Its database is named
 * `agent_platform_<name>_<slot>_<pid>` (global-setup.ts drops it if the run
 * dies).
 */
export async function freshStore(
  name: string,
  { postgres = Boolean(process.env.TEST_DATABASE_URL), migrated = false } = {},
): Promise<Store> {
  const dataDir = mkdtempSync(join(tmpdir(), "agent-platform-store-"));
  const admin = process.env.TEST_DATABASE_URL;
  if (!postgres || !admin) return { env: { DATA_DIR: dataDir }, drop: async () => rmSync(dataDir, { recursive: true, force: true }) };
  const db = `agent_platform_${name}_${process.env.VITEST_POOL_ID ?? "0"}_${process.pid}`;
  await superuser(admin, [`drop database if exists ${db} with (force)`], [`create database ${db}`]);
  const url = new URL(admin);
  url.pathname = `/${db}`;
  if (migrated) {
    // Migrated here, so processes starting together do not race to migrate.
    const orm = await openDatabase({ url: url.toString(), poolMax: 1, dataDir: "" });
    await migrateUp(orm);
    await orm.close();
  }
  return {
    env: { DATA_DIR: dataDir, DATABASE_URL: url.toString() },
    sql: (query) => superuser(url.toString(), [query]),
    async drop() {
      await superuser(admin, [`drop database if exists ${db} with (force)`]);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
