import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { clientOf, connectJson } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import { eventually } from "../support/faults.ts";
import { freshStore, startMain, stopAll, type MainProcess, type Store } from "../support/main-process.ts";

/*
 * The README promises JSON lines: every line the process writes, also while
 * deadlines of a few milliseconds cancel queries in PostgreSQL by the
 * hundred (kysely reports the failures of abandoned queries and cancels in
 * the background), and the pool is whole afterwards: no connection left
 * behind by a cancel that lost its race with the query's end.
 */

const SECRET = "json-lines-secret-0123456789abcdef0123456789";
const TENANT = "json-lines";
const POOL_MAX = 4;
const CALLS = 600;
const WORKERS = 8;
const LOOP_MS = 20_000;

describe.runIf(onPostgres)("the process under millisecond deadlines, on PostgreSQL", () => {
  let store: Store;
  let proc: MainProcess;

  beforeAll(async () => {
    store = await freshStore("json_lines", { postgres: true });
    proc = await startMain({
      ...store.env,
      JWT_SECRET: SECRET,
      LOG_LEVEL: "debug",
      DB_POOL_MAX: String(POOL_MAX),
      RATE_LIMIT_PER_SECOND: "0",
      DB_PROBE_INTERVAL_MS: "0",
    });
  }, 90_000);
  afterAll(async () => {
    await stopAll();
    await store?.drop();
  }, 60_000);

  it("writes only JSON lines while calls die at their deadlines, and serves a normal call afterwards", { timeout: 120_000 }, async () => {
    const token = await mintToken(new TextEncoder().encode(SECRET), { tenants: [TENANT], roles: ["admin"], subject: "lines", ttl: "10m" });
    const transport = connectJson(proc.url, token);
    const tools = clientOf(ToolService, transport);
    const executions = clientOf(ExecutionService, transport);
    for (let i = 0; i < 30; i++) await tools.createTool({ tool: { name: `t-${i}`, description: "d".repeat(500) } });

    // Reads and writes with deadlines from 2 to 50 ms: many end while their query runs.
    let next = 0;
    let failed = 0;
    const until = Date.now() + LOOP_MS;
    const worker = async () => {
      while (next < CALLS && Date.now() < until) {
        const i = next++;
        const timeoutMs = 2 + (i % 49);
        const call =
          i % 3 === 0
            ? tools.listTools({ pageSize: 100 }, { timeoutMs })
            : i % 3 === 1
              ? tools.createTool({ tool: { name: `c-${i}`, description: "x" } }, { timeoutMs })
              : executions.listExecutions({ pageSize: 50 }, { timeoutMs });
        await call.catch(() => void failed++);
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));
    expect(failed).toBeGreaterThan(0);

    // The pool is whole: another tenant's call with time to spare works (the pool is
    // shared; this tenant's own line may still be emptying), and soon no service
    // session is left beyond the pool, none of them inside a transaction.
    const otherToken = await mintToken(new TextEncoder().encode(SECRET), { tenants: ["other"], roles: ["admin"], subject: "o", ttl: "10m" });
    const other = clientOf(ToolService, connectJson(proc.url, otherToken));
    await other.createTool({ tool: { name: "after", description: "d" } }, { timeoutMs: 10_000 });
    expect((await other.listTools({}, { timeoutMs: 10_000 })).tools.map((t) => t.name)).toEqual(["after"]);
    await eventually(async () => {
      const sessions = await store.sql!<{ state: string }>(
        `select state from pg_stat_activity where datname = current_database() and usename = 'agent_platform_app' and query not like 'listen %'`,
      );
      return sessions.length <= POOL_MAX && sessions.every((s) => s.state === "idle") ? true : undefined;
    }, 10_000, `at most ${POOL_MAX} service connections, all idle`);

    await proc.stop();
    const lines = proc.output().split("\n").filter((line) => line !== "");
    const notJson = lines.filter((line) => {
      try {
        return typeof JSON.parse(line) !== "object";
      } catch {
        return true;
      }
    });
    expect(notJson).toEqual([]);
    const parsed = lines.map((line) => JSON.parse(line) as { level: string; msg: string });
    expect(parsed.some((l) => l.msg === "shutting down")).toBe(true);
    // The expected failures of abandoned queries and their cancels are kept, at debug.
    const abandoned = parsed.filter((l) => /abandoned query|whose call had ended/.test(l.msg));
    expect(abandoned.every((l) => l.level === "debug")).toBe(true);
  });
});
