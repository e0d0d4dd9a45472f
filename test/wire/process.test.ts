// The real entry point as a user runs it (`npm start`): a child process of
// src/main.ts, configured only through its environment, stopped by SIGTERM.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { clientOf, connectJson } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const SECRET = "process-test-secret-0123456789abcdef0123456789";
const START_DEADLINE_MS = 60_000;
const GRACE_MS = 10_000;

/** A running src/main.ts. */
interface MainProcess {
  child: ChildProcess;
  url: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

const running = new Set<MainProcess>();

/** Kills what a failed test left running (only processes this file started). */
async function killLeftovers(): Promise<void> {
  for (const p of running) {
    p.child.kill("SIGKILL");
    await p.exited;
  }
}
afterAll(killLeftovers);

/** Spawns `node --import ./scripts/require-node.mjs src/main.ts` with only `env` (plus PATH and HOME). */
function spawnMain(env: Record<string, string>, node = process.execPath): MainProcess {
  const child = spawn(node, ["--import", "./scripts/require-node.mjs", "src/main.ts"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const proc: MainProcess = {
    child,
    url: `http://127.0.0.1:${env.PORT ?? ""}`,
    output: () => output,
    exited: new Promise((resolve) => child.once("exit", (code) => resolve(code))),
  };
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  return proc;
}

/**
 * Starts the server on a port picked free, and waits until it logs that it
 * listens there and health answers SERVING. Between picking the port and
 * binding it (seconds: the database opens first) another process may take
 * it; then the server exits with EADDRINUSE and it is started again.
 */
async function startServer(env: Record<string, string>): Promise<MainProcess> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const proc = spawnMain({ ...env, HOST: "127.0.0.1", PORT: String(port), JWT_SECRET: SECRET });
    const deadline = Date.now() + START_DEADLINE_MS;
    let exited = false;
    void proc.exited.then(() => (exited = true));
    const listening = () => logLines(proc).some((l) => l.msg === "listening" && l.port === port);
    while (!(listening() && (await serving(proc.url)))) {
      if (exited) {
        if (attempt < 3 && proc.output().includes("EADDRINUSE")) break;
        throw new Error(`src/main.ts exited before serving:\n${proc.output()}`);
      }
      if (Date.now() > deadline) throw new Error(`not SERVING within ${START_DEADLINE_MS} ms:\n${proc.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (!exited) return proc;
  }
}

/** One health Check over Connect JSON; false while the port is closed or not serving. */
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

/** Waits for the exit code, failing after `ms`. */
async function exitWithin(proc: MainProcess, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms:\n${proc.output()}`)), ms);
  });
  try {
    return await Promise.race([proc.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The structured log lines (JSON) the process wrote. */
function logLines(proc: MainProcess): { msg?: string; port?: number }[] {
  return proc
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
}

/** A port nothing listens on right now. */
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

async function admin(statements: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "agent-platform-proc-"));
}

const backends: { backend: string; database: boolean }[] = [
  { backend: "embedded PGlite persisted in DATA_DIR", database: false },
  ...(onPostgres ? [{ backend: "PostgreSQL from DATABASE_URL", database: true }] : []),
];

describe.each(backends)("src/main.ts on $backend", ({ database }) => {
  const dataDir = tempDir();
  const dbName = `agent_platform_proc_${process.env.VITEST_POOL_ID ?? "0"}_${process.pid}`;
  const env: Record<string, string> = { DATA_DIR: dataDir, SHUTDOWN_GRACE_MS: String(GRACE_MS) };

  beforeAll(async () => {
    if (!database) return;
    await admin([`drop database if exists ${dbName} with (force)`, `create database ${dbName}`]);
    const url = new URL(process.env.TEST_DATABASE_URL!);
    url.pathname = `/${dbName}`;
    env.DATABASE_URL = url.toString();
  });
  afterAll(async () => {
    await killLeftovers();
    rmSync(dataDir, { recursive: true, force: true });
    if (database) await admin([`drop database if exists ${dbName} with (force)`]);
  });

  it("serves, stops cleanly on SIGTERM and keeps its data across a restart", { timeout: 3 * START_DEADLINE_MS }, async () => {
    const token = await mintToken(new TextEncoder().encode(SECRET), {
      tenants: ["proc"],
      roles: ["editor"],
      subject: "process-test",
      ttl: "10m",
    });

    const first = await startServer(env);
    const { tool } = await clientOf(ToolService, connectJson(first.url, token)).createTool({
      tool: { name: "survivor", description: "outlives a restart" },
    });
    expect(tool?.id).toBeTruthy();

    const stopping = Date.now();
    first.child.kill("SIGTERM");
    expect(await exitWithin(first, GRACE_MS)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(GRACE_MS);
    expect(logLines(first).map((l) => l.msg)).toEqual(expect.arrayContaining(["shutting down", "server stopped"]));

    const second = await startServer(env);
    const { tool: read } = await clientOf(ToolService, connectJson(second.url, token)).getTool({ toolId: tool!.id });
    expect(read).toEqual(tool);
    second.child.kill("SIGTERM");
    expect(await exitWithin(second, GRACE_MS)).toBe(0);
  });
});

describe("src/main.ts refusing to start", () => {
  it("exits non-zero naming JWT_SECRET in production without a JWT secret", { timeout: START_DEADLINE_MS }, async () => {
    const dataDir = tempDir();
    try {
      const proc = spawnMain({ NODE_ENV: "production", HOST: "127.0.0.1", PORT: String(await freePort()), DATA_DIR: dataDir });
      expect(await exitWithin(proc, START_DEADLINE_MS)).not.toBe(0);
      expect(proc.output()).toContain("JWT_SECRET");
    } finally {
      await killLeftovers();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  const oldNode = nodeOlderThan22();
  it.skipIf(!oldNode)(`exits non-zero asking for Node >= 22 under ${oldNode?.version ?? "an older Node"}`, { timeout: START_DEADLINE_MS }, async () => {
    const dataDir = tempDir();
    try {
      const proc = spawnMain({ HOST: "127.0.0.1", PORT: String(await freePort()), DATA_DIR: dataDir, JWT_SECRET: SECRET }, oldNode!.path);
      expect(await exitWithin(proc, START_DEADLINE_MS)).not.toBe(0);
      expect(proc.output()).toContain("Node >= 22");
    } finally {
      await killLeftovers();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/** The first `node` on PATH (or in /usr/bin, /usr/local/bin) older than 22, like `which -a node`. */
function nodeOlderThan22(): { path: string; version: string } | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/bin", "/usr/bin"];
  for (const dir of new Set(dirs.filter(Boolean))) {
    const path = join(dir, "node");
    try {
      accessSync(path, constants.X_OK);
      const version = execFileSync(path, ["--version"], { encoding: "utf8", timeout: 10_000 }).trim();
      if (Number(version.replace(/^v/, "").split(".")[0]) < 22) return { path, version };
    } catch {
      // not there, not executable, or not a Node we can ask
    }
  }
  return undefined;
}
