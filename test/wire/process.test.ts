// The real entry point as a user runs it (`npm start`): a child process of
// src/main.ts, configured only through its environment, stopped by SIGTERM.
import { execFileSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { clientOf, connectJson } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import { freePort } from "../support/faults.ts";
import { exitWithin, freshStore, spawnMain, startMain, stopAll, type MainProcess, type Store } from "../support/main-process.ts";

const SECRET = "process-test-secret-0123456789abcdef0123456789";
const START_DEADLINE_MS = 60_000;
const GRACE_MS = 10_000;

afterAll(stopAll);

/** Starts the server, and waits until it also logged that it listens on its port. */
function startServer(env: Record<string, string>): Promise<MainProcess> {
  return startMain({ ...env, JWT_SECRET: SECRET }, (proc, port) =>
    logLines(proc).some((l) => l.msg === "listening" && l.port === port),
  );
}

/** The structured log lines (JSON) the process wrote. */
function logLines(proc: MainProcess): { msg?: string; port?: number }[] {
  return proc
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "agent-platform-proc-"));
}

const backends: { backend: string; database: boolean }[] = [
  { backend: "embedded PGlite persisted in DATA_DIR", database: false },
  ...(onPostgres ? [{ backend: "PostgreSQL from DATABASE_URL", database: true }] : []),
];

describe.each(backends)("src/main.ts on $backend", ({ database }) => {
  let store: Store;
  let env: Record<string, string>;

  beforeAll(async () => {
    store = await freshStore("proc", { postgres: database });
    env = { ...store.env, SHUTDOWN_GRACE_MS: String(GRACE_MS) };
  });
  afterAll(async () => {
    await stopAll();
    await store?.drop();
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
      await stopAll();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("exits non-zero naming LOG_LEVEL when it is not a level it knows", { timeout: START_DEADLINE_MS }, async () => {
    const dataDir = tempDir();
    try {
      const proc = spawnMain({ LOG_LEVEL: "verbose", HOST: "127.0.0.1", PORT: String(await freePort()), DATA_DIR: dataDir, JWT_SECRET: SECRET });
      expect(await exitWithin(proc, START_DEADLINE_MS)).not.toBe(0);
      expect(proc.output()).toContain("LOG_LEVEL");
    } finally {
      await stopAll();
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
      await stopAll();
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
