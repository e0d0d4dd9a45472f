import { randomUUID } from "node:crypto";
import type { MikroORM } from "@mikro-orm/core";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { openDatabase } from "../../src/database.ts";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import {
  eventually,
  internalErrors,
  rowCounter,
  serverOver,
  serviceSessions,
  superuserSession,
  waitingOnLocks,
  type FaultServer,
} from "../support/faults.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * Faults inside one call: a query slower than the call's deadline (it is
 * cancelled in PostgreSQL, and its connection reused), a full pool (excess
 * calls fail fast), a connection that dies in the middle of a multi-row
 * write (all or nothing; a retry with the same request_id does not
 * duplicate), and PostgreSQL's error classes mapped to the right codes.
 */

const TENANT = "query-faults";
let s: TestServer;
let tools: ReturnType<typeof clientOf<typeof ToolService>>;
let agents: ReturnType<typeof clientOf<typeof AgentService>>;

beforeAll(async () => {
  s = await startTestServer();
  const transport = connectJson(s.url, await s.token(TENANT, ["admin"]));
  tools = clientOf(ToolService, transport);
  agents = clientOf(AgentService, transport);
});
afterAll(() => s?.close());

const session = () => superuserSession(s.db.config.url!);

describe("PostgreSQL errors through the one error mapper", () => {
  beforeAll(async () => {
    // Fails an insert into tools with the SQLSTATE its name carries ("raise-40001"), with SQL in the message.
    await s.db.sql(`create or replace function test_raise_for_name() returns trigger language plpgsql as $$
      begin
        if new.name like 'raise-%' then
          raise exception 'injected: select secret from tools where tenant_id = 1' using errcode = substr(new.name, 7, 5);
        end if;
        return new;
      end $$`);
    await s.db.sql(`create trigger test_raise before insert on tools for each row execute function test_raise_for_name()`);
  });
  afterAll(async () => {
    await s.db.sql(`drop trigger if exists test_raise on tools`);
    await s.db.sql(`drop function if exists test_raise_for_name()`);
  });

  it.each([
    { state: "40001", what: "serialization failure", code: Code.Aborted, reason: "TRANSACTION_CONFLICT" },
    { state: "40P01", what: "deadlock", code: Code.Aborted, reason: "TRANSACTION_CONFLICT" },
    { state: "57014", what: "query cancelled", code: Code.DeadlineExceeded, reason: undefined },
    { state: "57P01", what: "admin shutdown", code: Code.Unavailable, reason: "DATABASE_UNAVAILABLE" },
    { state: "57P02", what: "crash shutdown", code: Code.Unavailable, reason: "DATABASE_UNAVAILABLE" },
    { state: "57P03", what: "cannot connect now", code: Code.Unavailable, reason: "DATABASE_UNAVAILABLE" },
    { state: "08006", what: "connection failure", code: Code.Unavailable, reason: "DATABASE_UNAVAILABLE" },
    { state: "53300", what: "too many connections", code: Code.Unavailable, reason: "DATABASE_UNAVAILABLE" },
    { state: "22P02", what: "invalid text representation", code: Code.InvalidArgument, reason: "INVALID_VALUE" },
    { state: "XX000", what: "an internal error of PostgreSQL (the control)", code: Code.Internal, reason: undefined },
  ])("maps $state ($what) to $code, with no SQL on the wire, and writes nothing", async ({ state, code, reason }) => {
    const counts = await rowCounter(s.db.sql);
    const before = await counts();
    const err = await errorOf(tools.createTool({ tool: { name: `raise-${state}`, description: "d" }, requestId: randomUUID() }));
    expect(err.code).toBe(code);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe(reason);
    expect(err.rawMessage).not.toMatch(/select|secret|injected|tenant_id/i);
    expect(await counts()).toEqual(before);
  });
});

describe.runIf(onPostgres)("a query slower than the call's deadline", () => {
  let admin: pg.Client;
  let toolId: string;
  let logsBefore = 0;

  beforeAll(async () => {
    logsBefore = s.logs.length;
    admin = await session();
    toolId = (await tools.createTool({ tool: { name: "slow", description: "before" } })).tool!.id;
  });
  afterAll(() => admin?.end());

  it("answers DEADLINE_EXCEEDED on time, cancels the blocked UPDATE in PostgreSQL, and leaves the tool unchanged", async () => {
    await admin.query("begin");
    try {
      await admin.query("select * from tools where id = $1 for update", [toolId]);
      const update = tools.updateTool({ toolId, tool: { description: "after" }, updateMask: { paths: ["description"] } }, { timeoutMs: 500 });
      await eventually(async () => ((await waitingOnLocks(admin)).length === 1 ? true : undefined), 2000, "the UPDATE waits for the lock");
      const started = Date.now();
      const err = await errorOf(update);
      expect(err.code).toBe(Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(1000);
      // Still holding the lock: the UPDATE is no longer waiting for it, and its transaction is gone.
      await eventually(async () => ((await waitingOnLocks(admin)).length === 0 ? true : undefined), 2000, "the UPDATE is cancelled");
      expect((await serviceSessions(admin)).filter((a) => a.state.startsWith("idle in transaction"))).toEqual([]);
    } finally {
      await admin.query("rollback");
    }
    const { tool } = await tools.getTool({ toolId });
    expect(tool?.description).toBe("before");
  });

  it("answers DEADLINE_EXCEEDED for a read blocked by a table lock, and cancels the SELECT", async () => {
    await admin.query("begin");
    try {
      await admin.query("lock table tools in access exclusive mode");
      const list = errorOf(tools.listTools({}, { timeoutMs: 400 }));
      await eventually(async () => ((await waitingOnLocks(admin)).length >= 1 ? true : undefined), 2000, "the SELECT waits for the lock");
      const err = await list;
      expect(err.code).toBe(Code.DeadlineExceeded);
      await eventually(async () => ((await waitingOnLocks(admin)).length === 0 ? true : undefined), 2000, "the SELECT is cancelled");
    } finally {
      await admin.query("rollback");
    }
  });

  it("answers DEADLINE_EXCEEDED, not INTERNAL, when PostgreSQL cancels the query itself (57014)", async () => {
    await admin.query("begin");
    try {
      await admin.query("select * from tools where id = $1 for update", [toolId]);
      const call = errorOf(
        tools.updateTool({ toolId, tool: { description: "cancelled" }, updateMask: { paths: ["description"] } }, { timeoutMs: 10_000 }),
      );
      const [blocked] = await eventually(async () => {
        const waiting = await waitingOnLocks(admin);
        return waiting.length ? waiting : undefined;
      }, 5000, "the UPDATE waits for the lock");
      await admin.query("select pg_cancel_backend($1)", [blocked!.pid]);
      const err = await call;
      expect(err.code).toBe(Code.DeadlineExceeded);
      expect(err.rawMessage).not.toMatch(/canceling statement|update/i);
    } finally {
      await admin.query("rollback");
    }
  });

  it("reuses the connections cleanly afterwards: calls succeed, none is left idle in a transaction", async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => tools.getTool({ toolId }, { timeoutMs: 5000 })));
    expect(results.every((r) => r.tool?.id === toolId)).toBe(true);
    const { tool } = await tools.updateTool({ toolId, tool: { description: "finally" }, updateMask: { paths: ["description"] } });
    expect(tool?.description).toBe("finally");
    expect((await serviceSessions(admin)).filter((a) => a.state.startsWith("idle in transaction"))).toEqual([]);
    expect(internalErrors(s.logs.slice(logsBefore))).toEqual([]);
  });
});

describe.runIf(onPostgres)("a full connection pool (DB_POOL_MAX=2, DB_ACQUIRE_TIMEOUT_MS=300)", () => {
  let admin: pg.Client;
  let orm: MikroORM;
  let srv: FaultServer;
  let small: ReturnType<typeof clientOf<typeof ToolService>>;

  beforeAll(async () => {
    admin = await session();
    orm = await openDatabase({ ...s.db.config, poolMax: 2, acquireTimeoutMs: 300 });
    // One tenant may fill this pool: what is tested is the pool, not the
    // tenants' fair shares of it (test/tenants/fair-share.test.ts).
    srv = await serverOver(orm, { DB_PROBE_INTERVAL_MS: "0", TENANT_CALLS_IN_FLIGHT: "100" });
    small = clientOf(ToolService, connectJson(srv.url, await srv.token(TENANT)));
  });
  afterAll(async () => {
    await srv?.close();
    await orm?.close();
    await admin?.end();
  });

  it("fails the calls beyond the pool fast with UNAVAILABLE, serves the others when the pool frees, and leaves no transaction open", async () => {
    const locked = await Promise.all(["held-1", "held-2"].map(async (name) => (await small.createTool({ tool: { name, description: "d" } })).tool!));
    const other = (await small.createTool({ tool: { name: "free", description: "d" } })).tool!;
    await admin.query("begin");
    let slow: Promise<unknown>[] = [];
    try {
      await admin.query("select * from tools where id = any($1) for update", [locked.map((t) => t.id)]);
      // Two slow calls take both connections, each waiting for a lock.
      slow = locked.map((tool) =>
        small.updateTool({ toolId: tool.id, tool: { description: "slow" }, updateMask: { paths: ["description"] } }, { timeoutMs: 10_000 }),
      );
      await eventually(async () => ((await waitingOnLocks(admin)).length === 2 ? true : undefined), 5000, "both connections busy");

      const started = Date.now();
      const excess = await Promise.all(
        Array.from({ length: 6 }, () => errorOf(small.getTool({ toolId: other.id }, { timeoutMs: 10_000 }))),
      );
      expect(excess.map((e) => e.code)).toEqual(Array(6).fill(Code.Unavailable));
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await admin.query("rollback");
    }
    // The slow calls get their connections' lock and finish; the pool serves again.
    expect((await Promise.allSettled(slow)).map((r) => r.status)).toEqual(["fulfilled", "fulfilled"]);
    expect((await small.getTool({ toolId: other.id })).tool?.id).toBe(other.id);
    expect((await serviceSessions(admin)).filter((a) => a.state.startsWith("idle in transaction"))).toEqual([]);
    expect(internalErrors(srv.logs)).toEqual([]);
  });
});

describe.runIf(onPostgres)("a connection dropped inside a multi-row write (agent + version + tool links)", () => {
  let toolId: string;

  beforeAll(async () => {
    toolId = (await tools.createTool({ tool: { name: "linked", description: "d" } })).tool!.id;
    // While test_fault_plan names a table, an insert into it kills its own connection (FATAL 57P01), mid-transaction.
    await s.db.sql(`create table test_fault_plan (at_table text primary key)`);
    await s.db.sql(`create or replace function test_drop_connection() returns trigger language plpgsql security definer as $$
      begin
        if exists (select 1 from test_fault_plan where at_table = tg_table_name) then
          perform pg_terminate_backend(pg_backend_pid());
        end if;
        return new;
      end $$`);
    for (const table of ["agent_versions", "agent_tools"]) {
      await s.db.sql(`create trigger test_drop after insert on ${table} for each row execute function test_drop_connection()`);
    }
  });
  afterAll(async () => {
    for (const table of ["agent_versions", "agent_tools"]) await s.db.sql(`drop trigger if exists test_drop on ${table}`);
    await s.db.sql(`drop function if exists test_drop_connection()`);
    await s.db.sql(`drop table if exists test_fault_plan`);
  });

  it.each(["agent_versions", "agent_tools"])(
    "leaves nothing behind when the connection dies at the insert into %s, and a retry with the same request_id creates it once",
    async (table) => {
      const counts = await rowCounter(s.db.sql);
      const before = await counts();
      const requestId = randomUUID();
      const request = {
        agent: { name: `atomic-${table}`, role: "r", agentType: AgentType.WEBHOOK, config: { endpoint: "http://127.0.0.1:9/x" }, toolIds: [toolId] },
        requestId,
      };
      await s.db.sql(`insert into test_fault_plan values ($1)`.replace("$1", `'${table}'`));
      try {
        const err = await errorOf(agents.createAgent(request));
        expect(err.code).toBe(Code.Unavailable);
      } finally {
        await s.db.sql(`delete from test_fault_plan`);
      }
      // All or nothing: no agent, version, link or idempotency key was left.
      expect(await counts()).toEqual(before);

      const { agent } = await agents.createAgent(request);
      const { agent: again } = await agents.createAgent(request);
      expect(again?.id).toBe(agent?.id);
      expect(agent?.toolIds).toEqual([toolId]);
      const after = await counts();
      const grew = Object.fromEntries(Object.keys(after).filter((t) => after[t] !== before[t]).map((t) => [t, after[t]! - before[t]!]));
      expect(grew).toMatchObject({ agents: 1, agent_versions: 1, agent_tools: 1, idempotency_keys: 1 });
      expect(Object.values(grew).every((n) => n === 1)).toBe(true);
    },
  );
});
