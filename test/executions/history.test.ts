import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type { EntityManager } from "@mikro-orm/postgresql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import {
  ExecutionStatus,
  type Execution as ExecutionMessage,
  type ExecutionStatsBucket,
} from "../../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService, StatsBucketSize } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Role } from "../../src/auth/principal.ts";
import { scopeToTenant } from "../../src/db/tenant.ts";
import { ExecutionEvent } from "../../src/executions/execution-event.entity.ts";
import { Execution } from "../../src/executions/execution.entity.ts";
import { applyRetention } from "../../src/executions/retention.ts";
import { executionStats } from "../../src/executions/stats.ts";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * Execution history: the stored record of a run, listing with keyset pages
 * and filters, parent/child runs, exact statistics and retention.
 *
 * Agents run on the built-in echo model (offline). Fixtures that need chosen
 * create times are inserted through a tenant-scoped fork of the server's ORM.
 * Every fixture time outside the retention-job test lies after the fixed
 * "now" that test passes to applyRetention (2025-12-01), so the job only
 * ever touches the two tenants it is about, whatever ran before it.
 */

// Echo prices cost: round(1.5 * input + 2 * output) micro-USD.
const PRICES = JSON.stringify({ echo: { input: 1.5, output: 2 } });
const NEVER = "00000000-0000-4000-8000-000000000000";

/** The filters of a ListExecutions request. */
interface ListRequest {
  agentId?: string;
  statuses?: ExecutionStatus[];
  sessionId?: string;
  model?: string;
  startTime?: Timestamp;
  endTime?: Timestamp;
}
type ExecClient = Client<typeof ExecutionService>;
type AgentClient = Client<typeof AgentService>;

let s: TestServer;
const clients = new Map<string, { agents: AgentClient; executions: ExecClient }>();

async function as(tenant: string, role: Role = "editor", subject = `${tenant}-${role}`) {
  const key = `${tenant}|${role}|${subject}`;
  let found = clients.get(key);
  if (!found) {
    const transport = connectJson(s.url, await s.token(tenant, [role], subject));
    found = { agents: clientOf(AgentService, transport), executions: clientOf(ExecutionService, transport) };
    clients.set(key, found);
  }
  return found;
}

/** A new ACTIVE agent of `tenant` on the built-in echo template. */
async function echoAgent(tenant: string, name: string): Promise<string> {
  const { agents } = await as(tenant);
  const { agent } = await agents.createAgent({ agent: { name, role: "echo" }, templateId: "builtin-echo" });
  return agent!.id;
}

/** A fresh EntityManager scoped to `tenant`, as a request of that tenant gets. */
function emFor(tenant: string): EntityManager {
  const em = s.orm.em.fork() as EntityManager;
  scopeToTenant(em, tenant);
  return em;
}

/** What a fixture row sets; everything else takes a neutral default. */
type Row = Pick<Execution, "agentId" | "createTime"> & Partial<Execution>;

/** Inserts executions with chosen fields (every NOT NULL column set) for `tenant`. */
async function insert(tenant: string, rows: Row[]): Promise<Execution[]> {
  const em = emFor(tenant);
  const created = rows.map((r) =>
    em.create(Execution, {
      agentVersion: 1,
      parentExecutionId: null,
      sessionId: "",
      status: "SUCCEEDED",
      prompt: "fixture",
      input: null,
      model: "echo",
      response: "fixture",
      inputTokens: 0,
      outputTokens: 0,
      costMicros: 0,
      latencyMs: null,
      timeToFirstOutputMs: null,
      errorCode: "",
      errorMessage: "",
      errorDetail: "",
      requestId: null,
      requestHash: "",
      creator: "fixture",
      testModel: true,
      instanceId: "fixture",
      heartbeatTime: null,
      startTime: null,
      endTime: null,
      ...r,
    } as Execution),
  );
  await em.flush();
  return created;
}

/** Stores `n` stream events for each execution, as the runner would. */
async function insertEvents(tenant: string, executionIds: string[], n = 2): Promise<void> {
  const em = emFor(tenant);
  for (const executionId of executionIds) {
    for (let sequence = 1; sequence <= n; sequence++) {
      em.create(ExecutionEvent, {
        executionId,
        sequence,
        event: { sequence: String(sequence), executionId, output: { text: "x" } } as ExecutionEvent["event"],
      } as ExecutionEvent);
    }
  }
  await em.flush();
}

/** Stored events per execution id of `tenant` (ids without events are absent). */
async function eventCounts(tenant: string, executionIds: string[]): Promise<Record<string, number>> {
  const events = await emFor(tenant).find(ExecutionEvent, { executionId: { $in: executionIds } });
  const counts: Record<string, number> = {};
  for (const e of events) counts[e.executionId] = (counts[e.executionId] ?? 0) + 1;
  return counts;
}

const ts = (iso: string): Timestamp => timestampFromDate(new Date(iso));
const dateOf = (t: Timestamp | undefined): Date => timestampDate(t!);
const ms = (t: Timestamp | undefined): number => dateOf(t).getTime();

/** Newest first, as ListExecutions orders: create_time desc, then id desc. */
function newestFirst<T extends { id: string; createTime: Date }>(rows: T[]): T[] {
  return [...rows].sort((a, b) => b.createTime.getTime() - a.createTime.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

/** Every page of a listing, following next_page_token; checks each page's size. */
async function listAll(client: ExecClient, req: ListRequest, pageSize = 3): Promise<ExecutionMessage[]> {
  const all: ExecutionMessage[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 100; pages++) {
    const page = await client.listExecutions({ ...req, pageSize, pageToken });
    expect(page.executions.length).toBeLessThanOrEqual(pageSize);
    all.push(...page.executions);
    pageToken = page.nextPageToken;
    if (!pageToken) return all;
    expect(page.executions).toHaveLength(pageSize);
  }
  throw new Error("listing did not end within 100 pages");
}

beforeAll(async () => {
  s = await startTestServer({ MODEL_PRICES: PRICES });
});
afterAll(() => s?.close());

describe("GetExecution", () => {
  it("returns the stored record of a finished echo run", async () => {
    const tenant = "record";
    const agentId = await echoAgent(tenant, "recorder");
    const { executions } = await as(tenant, "editor", "alice");
    const requestId = "7d0f3a52-6c1e-4b7a-9a53-2f3c1d7e8b90";
    const before = Date.now();
    const { execution: ran } = await executions.executeAgent({
      input: { agentId, prompt: "hello echo world", sessionId: "sess-1", requestId, input: { city: "Oslo" } },
    });
    const after = Date.now();

    const { execution } = await executions.getExecution({ executionId: ran!.id });
    expect(execution).toEqual(ran);
    const e = execution!;
    expect(e.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(e.agentId).toBe(agentId);
    expect(e.agentVersion).toBe(1);
    expect(e.sessionId).toBe("sess-1");
    expect(e.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(e.prompt).toBe("hello echo world");
    expect(e.input).toEqual({ city: "Oslo" });
    expect(e.model).toBe("echo");
    expect(e.response).toBe("hello echo world");
    // Echo counts words: no system prompt, three prompt words in and out.
    expect(e.usage).toMatchObject({ inputTokens: 3n, outputTokens: 3n, costMicrosUsd: 11n });
    expect(e.totalUsage).toEqual(e.usage);
    expect(e.requestId).toBe(requestId);
    expect(e.creator).toBe("alice");
    expect(e.testModel).toBe(true);
    expect(e.error).toBeUndefined();
    expect(e.parentExecutionId).toBe("");
    expect(e.children).toEqual([]);

    const [created, started, ended] = [ms(e.createTime), ms(e.startTime), ms(e.endTime)];
    expect(created).toBeGreaterThanOrEqual(before);
    expect(started).toBeGreaterThanOrEqual(created);
    expect(ended).toBeGreaterThanOrEqual(started);
    expect(ended).toBeLessThanOrEqual(after);
    expect(Number(e.latencyMs)).toBe(ended - started);
    expect(Number(e.timeToFirstOutputMs)).toBeGreaterThanOrEqual(0);
    expect(Number(e.timeToFirstOutputMs)).toBeLessThanOrEqual(Number(e.latencyMs));
  });

  it("answers NOT_FOUND for an id that never existed and INVALID_ARGUMENT for a non-UUID", async () => {
    const { executions } = await as("record");
    const missing = await errorOf(executions.getExecution({ executionId: NEVER }));
    expect(missing.code).toBe(Code.NotFound);
    expect(missing.findDetails(ErrorInfoSchema)[0]?.reason).toBe("EXECUTION_NOT_FOUND");
    expect((await errorOf(executions.getExecution({ executionId: "not-a-uuid" }))).code).toBe(Code.InvalidArgument);
  });
});

describe("ListExecutions", () => {
  it("lists runs newest first", async () => {
    const tenant = "recent";
    const agentId = await echoAgent(tenant, "recent-agent");
    const { executions } = await as(tenant);
    const ids: string[] = [];
    for (const prompt of ["first", "second", "third"]) {
      ids.push((await executions.executeAgent({ input: { agentId, prompt } })).execution!.id);
    }
    const { executions: listed, nextPageToken } = await executions.listExecutions({});
    expect(listed.map((e) => e.id)).toEqual([...ids].reverse());
    expect(listed.map((e) => e.prompt)).toEqual(["third", "second", "first"]);
    expect(nextPageToken).toBe("");
  });

  describe("keyset pages", () => {
    const tenant = "pager";
    let agentId: string;
    let original: Execution[];

    beforeAll(async () => {
      agentId = await echoAgent(tenant, "pager-agent");
      // 23 runs in groups of three sharing one create_time, so ties on
      // create_time straddle page boundaries and only the id breaks them.
      const base = Date.parse("2026-02-01T00:00:00.000Z");
      original = await insert(
        tenant,
        Array.from({ length: 23 }, (_, i) => ({ agentId, createTime: new Date(base + Math.floor(i / 3) * 1000), prompt: `p${i}` })),
      );
    });

    it("walks every execution exactly once, newest first, breaking create_time ties by id", async () => {
      const { executions } = await as(tenant);
      const listed = await listAll(executions, {}, 5);
      expect(listed.map((e) => e.id)).toEqual(newestFirst(original).map((e) => e.id));
    });

    it("has no gaps or duplicates among the original executions when new ones arrive between pages", async () => {
      const { executions } = await as(tenant);
      const seen: string[] = [];
      const added: string[] = [];
      let pageToken = "";
      let page = 0;
      do {
        const res = await executions.listExecutions({ pageSize: 4, pageToken });
        seen.push(...res.executions.map((e) => e.id));
        pageToken = res.nextPageToken;
        // Between pages: a new newest run, one whose create_time ties the
        // newest original, and one older than all of them.
        const fresh = await insert(tenant, [
          { agentId, createTime: new Date(), prompt: `new-${page}` },
          { agentId, createTime: original[22]!.createTime, prompt: `tie-${page}` },
          { agentId, createTime: new Date(Date.parse("2026-01-01T00:00:00.000Z") - page * 1000), prompt: `old-${page}` },
        ]);
        added.push(...fresh.map((e) => e.id));
        page++;
      } while (pageToken && page < 50);
      expect(pageToken).toBe("");
      expect(new Set(seen).size).toBe(seen.length);
      const originalIds = new Set(original.map((e) => e.id));
      expect(seen.filter((id) => originalIds.has(id))).toEqual(newestFirst(original).map((e) => e.id));
      expect(seen.every((id) => originalIds.has(id) || added.includes(id))).toBe(true);
    });

    it("clamps a huge page size to 200 and defaults 0 to 50", async () => {
      const { executions } = await as(tenant);
      await insert(
        tenant,
        Array.from({ length: 200 }, (_, i) => ({ agentId, createTime: new Date(Date.parse("2025-12-15T00:00:00Z") + i), prompt: `bulk${i}` })),
      );
      expect((await executions.listExecutions({ pageSize: 0 })).executions).toHaveLength(50);
      const huge = await executions.listExecutions({ pageSize: 1_000_000 });
      expect(huge.executions).toHaveLength(200);
      expect(huge.nextPageToken).not.toBe("");
    });

    it("rejects a negative page size with INVALID_ARGUMENT", async () => {
      const { executions } = await as(tenant);
      const err = await errorOf(executions.listExecutions({ pageSize: -1 }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("page_size");
    });

    it("rejects a forged token and a token issued for other filters with INVALID_ARGUMENT", async () => {
      const { executions } = await as(tenant);
      const { nextPageToken } = await executions.listExecutions({ pageSize: 2 });
      expect(nextPageToken).not.toBe("");
      const [body, sig] = nextPageToken.split(".");
      // A cursor edited by hand keeps the old signature.
      const edited = Buffer.from(
        JSON.stringify({ ...JSON.parse(Buffer.from(body!, "base64url").toString()), c: ["2099-01-01T00:00:00.000Z", NEVER] }),
      ).toString("base64url");
      const bad = {
        "edited cursor": `${edited}.${sig}`,
        "edited signature": `${body}.${sig!.slice(0, -2)}AA`,
        garbage: "not a token",
      };
      for (const [what, pageToken] of Object.entries(bad)) {
        const err = await errorOf(executions.listExecutions({ pageSize: 2, pageToken }));
        expect(err.code, what).toBe(Code.InvalidArgument);
        expect(err.findDetails(ErrorInfoSchema)[0]?.reason, what).toBe("INVALID_PAGE_TOKEN");
      }
      const otherFilters: ListRequest[] = [
        { agentId },
        { statuses: [ExecutionStatus.SUCCEEDED] },
        { sessionId: "s" },
        { model: "echo" },
        { startTime: ts("2020-01-01T00:00:00Z") },
        { endTime: ts("2099-01-01T00:00:00Z") },
      ];
      for (const filter of otherFilters) {
        const err = await errorOf(executions.listExecutions({ pageSize: 2, pageToken: nextPageToken, ...filter }));
        expect(err.code, JSON.stringify(Object.keys(filter))).toBe(Code.InvalidArgument);
      }
      // The same filters in another order of statuses are the same query.
      const filtered = await executions.listExecutions({
        pageSize: 2,
        statuses: [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED],
      });
      const next = await executions.listExecutions({
        pageSize: 2,
        statuses: [ExecutionStatus.FAILED, ExecutionStatus.SUCCEEDED],
        pageToken: filtered.nextPageToken,
      });
      expect(next.executions).toHaveLength(2);
    });
  });

  describe("filters", () => {
    const tenant = "filters";
    let f1: string;
    let f2: string;
    let rows: Execution[];

    beforeAll(async () => {
      f1 = await echoAgent(tenant, "filter-one");
      f2 = await echoAgent(tenant, "filter-two");
      const at = (minute: number) => new Date(Date.parse("2026-03-01T10:00:00.000Z") + minute * 60_000);
      rows = await insert(tenant, [
        { agentId: f1, status: "SUCCEEDED", sessionId: "s1", model: "echo", createTime: at(0) },
        { agentId: f1, status: "FAILED", sessionId: "s1", model: "gpt-x", createTime: at(1) },
        { agentId: f2, status: "SUCCEEDED", sessionId: "s2", model: "gpt-x", createTime: at(2) },
        { agentId: f2, status: "TIMED_OUT", sessionId: "", model: "echo", createTime: at(3) },
        { agentId: f1, status: "CANCELLED", sessionId: "s2", model: "echo", createTime: at(4) },
        { agentId: f1, status: "RUNNING", sessionId: "s1", model: "echo", createTime: at(5) },
        { agentId: f2, status: "QUEUED", sessionId: "", model: "gpt-x", createTime: at(6) },
        { agentId: f1, status: "SUCCEEDED", sessionId: "s1", model: "echo", createTime: at(7) },
      ]);
    });

    /** The fixture rows `pred` keeps, in listing order. */
    const expected = (pred: (r: Execution) => boolean) => newestFirst(rows.filter(pred)).map((r) => r.id);

    it("filters by agent", async () => {
      const { executions } = await as(tenant);
      expect((await listAll(executions, { agentId: f1 })).map((e) => e.id)).toEqual(expected((r) => r.agentId === f1));
      expect((await listAll(executions, { agentId: f2 })).map((e) => e.id)).toEqual(expected((r) => r.agentId === f2));
      expect(await listAll(executions, { agentId: NEVER })).toEqual([]);
    });

    it("filters by any of several statuses", async () => {
      const { executions } = await as(tenant);
      const cases: [ExecutionStatus[], string[]][] = [
        [[ExecutionStatus.SUCCEEDED], ["SUCCEEDED"]],
        [[ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT], ["FAILED", "TIMED_OUT"]],
        [[ExecutionStatus.QUEUED, ExecutionStatus.RUNNING], ["QUEUED", "RUNNING"]],
        [[ExecutionStatus.CANCELLED], ["CANCELLED"]],
      ];
      for (const [statuses, stored] of cases) {
        const listed = await listAll(executions, { statuses });
        expect(listed.map((e) => e.id), stored.join()).toEqual(expected((r) => stored.includes(r.status)));
        expect(listed.every((e) => statuses.includes(e.status))).toBe(true);
      }
      expect((await errorOf(executions.listExecutions({ statuses: [99 as ExecutionStatus] }))).code).toBe(Code.InvalidArgument);
    });

    it("filters by session and by model", async () => {
      const { executions } = await as(tenant);
      expect((await listAll(executions, { sessionId: "s1" })).map((e) => e.id)).toEqual(expected((r) => r.sessionId === "s1"));
      expect((await listAll(executions, { sessionId: "s2" })).map((e) => e.id)).toEqual(expected((r) => r.sessionId === "s2"));
      expect((await listAll(executions, { model: "gpt-x" })).map((e) => e.id)).toEqual(expected((r) => r.model === "gpt-x"));
      expect(await listAll(executions, { model: "gpt" })).toEqual([]);
    });

    it("filters by create_time range, start inclusive and end exclusive", async () => {
      const { executions } = await as(tenant);
      const from = rows[2]!.createTime;
      const to = rows[6]!.createTime;
      const listed = await listAll(executions, { startTime: timestampFromDate(from), endTime: timestampFromDate(to) });
      expect(listed.map((e) => e.id)).toEqual(expected((r) => r.createTime >= from && r.createTime < to));
      expect(listed.map((e) => e.id)).toEqual([rows[5]!.id, rows[4]!.id, rows[3]!.id, rows[2]!.id]);
      const open = await listAll(executions, { startTime: timestampFromDate(rows[7]!.createTime) });
      expect(open.map((e) => e.id)).toEqual([rows[7]!.id]);
      const before = await listAll(executions, { endTime: timestampFromDate(rows[1]!.createTime) });
      expect(before.map((e) => e.id)).toEqual([rows[0]!.id]);
    });

    it("combines filters", async () => {
      const { executions } = await as(tenant);
      const listed = await listAll(executions, {
        agentId: f1,
        statuses: [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED],
        sessionId: "s1",
        model: "echo",
        startTime: timestampFromDate(rows[0]!.createTime),
        endTime: ts("2026-03-02T00:00:00Z"),
      });
      expect(listed.map((e) => e.id)).toEqual([rows[7]!.id, rows[0]!.id]);
    });
  });
});

describe("child executions", () => {
  const tenant = "multi";
  let planner: string;
  let worker: string;

  beforeAll(async () => {
    planner = await echoAgent(tenant, "planner");
    worker = await echoAgent(tenant, "worker");
  });

  it("nests children under their parent and rolls their usage into total_usage", async () => {
    const { executions } = await as(tenant);
    const run = async (agentId: string, prompt: string, parentExecutionId = "") =>
      (await executions.executeAgent({ input: { agentId, prompt, parentExecutionId } })).execution!;
    const parent = await run(planner, "plan the trip"); // 3 words: 3 in, 3 out, 11 µ$
    const flight = await run(worker, "book a flight now", parent.id); // 4 words: 4, 4, 14
    const hotel = await run(worker, "book a hotel", parent.id); // 3 words: 3, 3, 11
    const pay = await run(planner, "pay", flight.id); // 1 word: 1, 1, round(3.5) = 4
    expect(flight.parentExecutionId).toBe(parent.id);
    expect(pay.parentExecutionId).toBe(flight.id);

    const { execution: tree } = await executions.getExecution({ executionId: parent.id });
    expect(tree?.id).toBe(parent.id);
    expect(tree?.usage).toMatchObject({ inputTokens: 3n, outputTokens: 3n, costMicrosUsd: 11n });
    expect(tree?.totalUsage).toMatchObject({ inputTokens: 11n, outputTokens: 11n, costMicrosUsd: 40n });
    expect(tree?.children.map((c) => c.id)).toEqual([flight.id, hotel.id]);
    const [flightNode, hotelNode] = tree!.children;
    expect(flightNode?.agentId).toBe(worker);
    expect(flightNode?.parentExecutionId).toBe(parent.id);
    expect(flightNode?.usage).toMatchObject({ inputTokens: 4n, outputTokens: 4n, costMicrosUsd: 14n });
    expect(flightNode?.totalUsage).toMatchObject({ inputTokens: 5n, outputTokens: 5n, costMicrosUsd: 18n });
    expect(flightNode?.children.map((c) => c.id)).toEqual([pay.id]);
    expect(flightNode?.children[0]?.totalUsage).toEqual(flightNode?.children[0]?.usage);
    expect(hotelNode?.children).toEqual([]);
    expect(hotelNode?.totalUsage).toEqual(hotelNode?.usage);

    // A child read on its own carries its own subtree only.
    const { execution: sub } = await executions.getExecution({ executionId: flight.id });
    expect(sub).toEqual(flightNode);
  });

  it("rolls the usage of descendants at any depth into total_usage", async () => {
    // A chain of 8 runs, each a child of the one before (1 in, 2 out, 3 µ$ each).
    let parentExecutionId: string | null = null;
    const chain: Execution[] = [];
    for (let depth = 0; depth < 8; depth++) {
      const [e] = await insert(tenant, [
        { agentId: worker, createTime: new Date(Date.parse("2026-04-01T00:00:00Z") + depth), parentExecutionId, inputTokens: 1, outputTokens: 2, costMicros: 3 },
      ]);
      chain.push(e!);
      parentExecutionId = e!.id;
    }
    const { executions } = await as(tenant);
    const { execution: root } = await executions.getExecution({ executionId: chain[0]!.id });
    expect(root?.children.map((c) => c.id)).toEqual([chain[1]!.id]);
    expect(root?.totalUsage).toMatchObject({ inputTokens: 8n, outputTokens: 16n, costMicrosUsd: 24n });
  });

  it("answers NOT_FOUND for a parent that does not exist, and stores nothing", async () => {
    const { executions } = await as(tenant);
    const before = (await executions.listExecutions({ pageSize: 200 })).executions.length;
    const err = await errorOf(executions.executeAgent({ input: { agentId: worker, prompt: "orphan", parentExecutionId: NEVER } }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("EXECUTION_NOT_FOUND");
    expect((await executions.listExecutions({ pageSize: 200 })).executions).toHaveLength(before);
  });
});

/*
 * Statistics against a hand-computed fixture. Tenant "stats", agents P and
 * Q, three hours 2026-01-15T23:00Z .. 2026-01-16T02:00Z (crossing midnight,
 * so DAY gives two buckets). latency null = not finished.
 *
 *        time (UTC)           agent status     latency  in   out  cost
 *   a1   01-15 23:05:00.000   P     SUCCEEDED  100      10   20   30
 *   a2   01-15 23:05:30.000   P     SUCCEEDED  300      11   21   31
 *   a3   01-15 23:20:00.000   Q     FAILED     50       5    0    7
 *   a4   01-15 23:59:59.999   P     RUNNING    -        0    0    0
 *   b1   01-16 00:00:00.000   Q     SUCCEEDED  1000     100  200  300
 *   b2   01-16 00:30:00.000   P     TIMED_OUT  5000     40   0    60
 *   b3   01-16 00:30:10.000   P     CANCELLED  20       1    1    2
 *   b4   01-16 00:45:00.000   Q     SUCCEEDED  400      30   60   90
 *   b5   01-16 00:50:00.000   P     QUEUED     -        0    0    0
 *   c1   01-16 01:00:00.000   P     SUCCEEDED  7        2    3    4
 *   c2   01-16 01:10:00.000   P     SUCCEEDED  13       2    3    4
 *   c3   01-16 01:10:00.000   Q     FAILED     250      9    0    12
 *   c4   01-16 01:59:59.999   P     SUCCEEDED  64       1    1    1
 * Outside the range: 22:59:59.999 and 02:00:00.000 (end is exclusive).
 * Another tenant has runs inside the range; they must never count.
 *
 * percentile_cont(f) over n sorted latencies v: position f*(n-1), linear
 * interpolation between its neighbours.
 */
describe("GetExecutionStats", () => {
  const tenant = "stats";
  const FROM = "2026-01-15T23:00:00.000Z";
  const TO = "2026-01-16T02:00:00.000Z";
  let p: string;
  let q: string;
  type Fixture = [time: string, agent: "P" | "Q", status: string, latency: number | null, input: number, output: number, cost: number];
  const FIXTURE: Fixture[] = [
    ["2026-01-15T23:05:00.000Z", "P", "SUCCEEDED", 100, 10, 20, 30],
    ["2026-01-15T23:05:30.000Z", "P", "SUCCEEDED", 300, 11, 21, 31],
    ["2026-01-15T23:20:00.000Z", "Q", "FAILED", 50, 5, 0, 7],
    ["2026-01-15T23:59:59.999Z", "P", "RUNNING", null, 0, 0, 0],
    ["2026-01-16T00:00:00.000Z", "Q", "SUCCEEDED", 1000, 100, 200, 300],
    ["2026-01-16T00:30:00.000Z", "P", "TIMED_OUT", 5000, 40, 0, 60],
    ["2026-01-16T00:30:10.000Z", "P", "CANCELLED", 20, 1, 1, 2],
    ["2026-01-16T00:45:00.000Z", "Q", "SUCCEEDED", 400, 30, 60, 90],
    ["2026-01-16T00:50:00.000Z", "P", "QUEUED", null, 0, 0, 0],
    ["2026-01-16T01:00:00.000Z", "P", "SUCCEEDED", 7, 2, 3, 4],
    ["2026-01-16T01:10:00.000Z", "P", "SUCCEEDED", 13, 2, 3, 4],
    ["2026-01-16T01:10:00.000Z", "Q", "FAILED", 250, 9, 0, 12],
    ["2026-01-16T01:59:59.999Z", "P", "SUCCEEDED", 64, 1, 1, 1],
  ];
  const OUTSIDE: Fixture[] = [
    ["2026-01-15T22:59:59.999Z", "P", "SUCCEEDED", 9999, 999, 999, 999],
    ["2026-01-16T02:00:00.000Z", "Q", "FAILED", 9999, 999, 999, 999],
  ];

  /** Expected bucket, written out by hand. */
  interface Expected {
    start?: string;
    count: number;
    succeeded: number;
    failed: number;
    timedOut: number;
    cancelled: number;
    rate: number;
    avg: number;
    p50: number;
    p95: number;
    input: number;
    output: number;
    cost: number;
  }

  function expectBucket(actual: ExecutionStatsBucket | undefined, e: Expected, label: string) {
    expect(actual, label).toBeDefined();
    const b = actual!;
    if (e.start) expect(dateOf(b.startTime).toISOString(), label).toBe(e.start);
    else expect(b.startTime, label).toBeUndefined();
    expect(
      { count: b.count, succeeded: b.succeeded, failed: b.failed, timedOut: b.timedOut, cancelled: b.cancelled, usage: b.usage },
      label,
    ).toMatchObject({
      count: BigInt(e.count),
      succeeded: BigInt(e.succeeded),
      failed: BigInt(e.failed),
      timedOut: BigInt(e.timedOut),
      cancelled: BigInt(e.cancelled),
      usage: { inputTokens: BigInt(e.input), outputTokens: BigInt(e.output), costMicrosUsd: BigInt(e.cost) },
    });
    expect(b.successRate, `${label} success_rate`).toBeCloseTo(e.rate, 9);
    expect(b.latencyAvgMs, `${label} latency_avg`).toBeCloseTo(e.avg, 6);
    expect(b.latencyP50Ms, `${label} latency_p50`).toBeCloseTo(e.p50, 6);
    expect(b.latencyP95Ms, `${label} latency_p95`).toBeCloseTo(e.p95, 6);
  }

  // Latencies of each bucket, sorted, to read the percentiles off:
  //   hour 23: 50 100 300              p50 pos 1 = 100; p95 pos 1.9 = 100 + .9*200 = 280
  //   hour 00: 20 400 1000 5000        p50 pos 1.5 = 700; p95 pos 2.85 = 1000 + .85*4000 = 4400
  //   hour 01: 7 13 64 250             p50 pos 1.5 = 38.5; p95 pos 2.85 = 64 + .85*186 = 222.1
  //   day 16:  7 13 20 64 250 400 1000 5000   p50 pos 3.5 = 157; p95 pos 6.65 = 1000 + .65*4000 = 3600
  //   total:   7 13 20 50 64 100 250 300 400 1000 5000   p50 pos 5 = 100; p95 pos 9.5 = 3000
  //   agent P: 7 13 20 64 100 300 5000 p50 pos 3 = 64; p95 pos 5.7 = 300 + .7*4700 = 3590
  const HOUR_23: Expected = {
    start: "2026-01-15T23:00:00.000Z", count: 4, succeeded: 2, failed: 1, timedOut: 0, cancelled: 0,
    rate: 2 / 3, avg: 150, p50: 100, p95: 280, input: 26, output: 41, cost: 68,
  };
  const HOUR_00: Expected = {
    start: "2026-01-16T00:00:00.000Z", count: 5, succeeded: 2, failed: 0, timedOut: 1, cancelled: 1,
    rate: 2 / 4, avg: 6420 / 4, p50: 700, p95: 4400, input: 171, output: 261, cost: 452,
  };
  const HOUR_01: Expected = {
    start: "2026-01-16T01:00:00.000Z", count: 4, succeeded: 3, failed: 1, timedOut: 0, cancelled: 0,
    rate: 3 / 4, avg: 334 / 4, p50: 38.5, p95: 222.1, input: 14, output: 7, cost: 21,
  };
  const TOTAL: Expected = {
    count: 13, succeeded: 7, failed: 2, timedOut: 1, cancelled: 1,
    rate: 7 / 11, avg: 7204 / 11, p50: 100, p95: 3000, input: 211, output: 309, cost: 541,
  };

  beforeAll(async () => {
    p = await echoAgent(tenant, "stats-p");
    q = await echoAgent(tenant, "stats-q");
    const toRow = ([time, agent, status, latency, input, output, cost]: Fixture): Row => ({
      agentId: agent === "P" ? p : q,
      createTime: new Date(time),
      status,
      latencyMs: latency,
      inputTokens: input,
      outputTokens: output,
      costMicros: cost,
      startTime: latency === null ? null : new Date(time),
      endTime: latency === null ? null : new Date(Date.parse(time) + latency),
    });
    await insert(tenant, [...FIXTURE, ...OUTSIDE].map(toRow));

    // Another tenant, same range, much larger numbers.
    const other = await echoAgent("stats-other", "stats-o");
    await insert(
      "stats-other",
      (
        [
          ["2026-01-15T23:10:00.000Z", "P", "SUCCEEDED", 77_777, 5000, 5000, 5000],
          ["2026-01-16T00:10:00.000Z", "P", "FAILED", 88_888, 6000, 6000, 6000],
          ["2026-01-16T01:10:00.000Z", "P", "CANCELLED", 99_999, 7000, 7000, 7000],
        ] as Fixture[]
      ).map((f) => ({ ...toRow(f), agentId: other })),
    );
  });

  const stats = async (bucketSize: StatsBucketSize, agentId = "", from = FROM, to = TO, t = tenant) =>
    (await as(t, "viewer")).executions.getExecutionStats({ agentId, startTime: ts(from), endTime: ts(to), bucketSize });

  it("buckets by hour for the tenant, with the whole range in total", async () => {
    const res = await stats(StatsBucketSize.HOUR);
    expect(res.buckets).toHaveLength(3);
    expectBucket(res.buckets[0], HOUR_23, "hour 23");
    expectBucket(res.buckets[1], HOUR_00, "hour 00");
    expectBucket(res.buckets[2], HOUR_01, "hour 01");
    expectBucket(res.total, TOTAL, "total");
    // Unspecified means hour.
    expect(await stats(StatsBucketSize.UNSPECIFIED)).toEqual(res);
  });

  it("buckets by day (UTC), splitting the range at midnight", async () => {
    const res = await stats(StatsBucketSize.DAY);
    expect(res.buckets).toHaveLength(2);
    expectBucket(res.buckets[0], { ...HOUR_23, start: "2026-01-15T00:00:00.000Z" }, "day 15");
    expectBucket(
      res.buckets[1],
      {
        start: "2026-01-16T00:00:00.000Z", count: 9, succeeded: 5, failed: 1, timedOut: 1, cancelled: 1,
        rate: 5 / 8, avg: 6754 / 8, p50: 157, p95: 3600, input: 185, output: 268, cost: 473,
      },
      "day 16",
    );
    expectBucket(res.total, TOTAL, "total");
  });

  it("buckets by minute, leaving empty minutes out", async () => {
    const res = await stats(StatsBucketSize.MINUTE);
    const minute = (iso: string, e: Omit<Expected, "start">): Expected => ({ ...e, start: iso });
    const one = (status: string, latency: number | null, input: number, output: number, cost: number): Omit<Expected, "start"> => ({
      count: 1,
      succeeded: status === "SUCCEEDED" ? 1 : 0,
      failed: status === "FAILED" ? 1 : 0,
      timedOut: status === "TIMED_OUT" ? 1 : 0,
      cancelled: status === "CANCELLED" ? 1 : 0,
      rate: status === "SUCCEEDED" ? 1 : 0,
      avg: latency ?? 0,
      p50: latency ?? 0,
      p95: latency ?? 0,
      input,
      output,
      cost,
    });
    const expected: Expected[] = [
      // 23:05 holds a1 and a2: latencies 100, 300 → p50 200, p95 100 + .95*200 = 290.
      minute("2026-01-15T23:05:00.000Z", {
        count: 2, succeeded: 2, failed: 0, timedOut: 0, cancelled: 0, rate: 1, avg: 200, p50: 200, p95: 290, input: 21, output: 41, cost: 61,
      }),
      minute("2026-01-15T23:20:00.000Z", one("FAILED", 50, 5, 0, 7)),
      // Only a RUNNING run: nothing finished, no latency.
      minute("2026-01-15T23:59:00.000Z", one("RUNNING", null, 0, 0, 0)),
      minute("2026-01-16T00:00:00.000Z", one("SUCCEEDED", 1000, 100, 200, 300)),
      // 00:30 holds b2 (TIMED_OUT 5000) and b3 (CANCELLED 20): p50 2510, p95 20 + .95*4980 = 4751.
      minute("2026-01-16T00:30:00.000Z", {
        count: 2, succeeded: 0, failed: 0, timedOut: 1, cancelled: 1, rate: 0, avg: 2510, p50: 2510, p95: 4751, input: 41, output: 1, cost: 62,
      }),
      minute("2026-01-16T00:45:00.000Z", one("SUCCEEDED", 400, 30, 60, 90)),
      minute("2026-01-16T00:50:00.000Z", one("QUEUED", null, 0, 0, 0)),
      minute("2026-01-16T01:00:00.000Z", one("SUCCEEDED", 7, 2, 3, 4)),
      // 01:10 holds c2 (SUCCEEDED 13) and c3 (FAILED 250): p50 131.5, p95 13 + .95*237 = 238.15.
      minute("2026-01-16T01:10:00.000Z", {
        count: 2, succeeded: 1, failed: 1, timedOut: 0, cancelled: 0, rate: 0.5, avg: 131.5, p50: 131.5, p95: 238.15, input: 11, output: 3, cost: 16,
      }),
      minute("2026-01-16T01:59:00.000Z", one("SUCCEEDED", 64, 1, 1, 1)),
    ];
    expect(res.buckets.map((b) => dateOf(b.startTime).toISOString())).toEqual(expected.map((e) => e.start));
    expected.forEach((e, i) => expectBucket(res.buckets[i], e, `minute ${e.start}`));
    expectBucket(res.total, TOTAL, "total");
  });

  it("buckets by UTC hour and day even when the database session's TimeZone is not UTC", async () => {
    // A PostgreSQL server's TimeZone defaults to the host's zone. The stats
    // query runs here in one transaction whose session zone is +05:30, as it
    // would on such a server; timestamps in the API are UTC, so must buckets be.
    const em = emFor(tenant);
    const range = { from: new Date(FROM), to: new Date(TO), agentId: "" };
    const [hours, days] = await em.transactional(async (tx) => {
      await tx.execute("set local time zone 'Asia/Kolkata'");
      return [await executionStats(tx, range, "hour"), await executionStats(tx, range, "day")];
    });
    expect(hours.map((r) => r.bucket?.toISOString())).toEqual([
      "2026-01-15T23:00:00.000Z",
      "2026-01-16T00:00:00.000Z",
      "2026-01-16T01:00:00.000Z",
    ]);
    expect(hours.map((r) => r.count)).toEqual([4, 5, 4]);
    expect(days.map((r) => r.bucket?.toISOString())).toEqual(["2026-01-15T00:00:00.000Z", "2026-01-16T00:00:00.000Z"]);
    expect(days.map((r) => r.count)).toEqual([4, 9]);
  });

  it("restricts to one agent", async () => {
    const res = await stats(StatsBucketSize.HOUR, p);
    expect(res.buckets.map((b) => Number(b.count))).toEqual([3, 3, 3]);
    // Hour 23 for P: a1, a2, a4 → 100, 300 (a4 unfinished).
    expectBucket(res.buckets[0], {
      start: "2026-01-15T23:00:00.000Z", count: 3, succeeded: 2, failed: 0, timedOut: 0, cancelled: 0,
      rate: 1, avg: 200, p50: 200, p95: 290, input: 21, output: 41, cost: 61,
    }, "P hour 23");
    // Hour 00 for P: b2, b3, b5 → 20, 5000; p95 20 + .95*4980 = 4751.
    expectBucket(res.buckets[1], {
      start: "2026-01-16T00:00:00.000Z", count: 3, succeeded: 0, failed: 0, timedOut: 1, cancelled: 1,
      rate: 0, avg: 2510, p50: 2510, p95: 4751, input: 41, output: 1, cost: 62,
    }, "P hour 00");
    // Hour 01 for P: c1, c2, c4 → 7, 13, 64; p95 pos 1.9 = 13 + .9*51 = 58.9.
    expectBucket(res.buckets[2], {
      start: "2026-01-16T01:00:00.000Z", count: 3, succeeded: 3, failed: 0, timedOut: 0, cancelled: 0,
      rate: 1, avg: 84 / 3, p50: 13, p95: 58.9, input: 5, output: 7, cost: 9,
    }, "P hour 01");
    const total: Expected = {
      count: 9, succeeded: 5, failed: 0, timedOut: 1, cancelled: 1,
      rate: 5 / 7, avg: 5504 / 7, p50: 64, p95: 3590, input: 67, output: 49, cost: 132,
    };
    expectBucket(res.total, total, "P total");
    const byDay = await stats(StatsBucketSize.DAY, p);
    expect(byDay.buckets.map((b) => Number(b.count))).toEqual([3, 6]);
    expectBucket(byDay.total, total, "P total by day");
    const byMinute = await stats(StatsBucketSize.MINUTE, p);
    expect(byMinute.buckets.reduce((n, b) => n + Number(b.count), 0)).toBe(9);
    expectBucket(byMinute.total, total, "P total by minute");

    // Q is the rest of the tenant.
    const qTotal = (await stats(StatsBucketSize.HOUR, q)).total!;
    expect(Number(qTotal.count) + 9).toBe(TOTAL.count);
    expect(qTotal.usage?.costMicrosUsd).toBe(BigInt(TOTAL.cost - 132));
  });

  it("never counts another tenant's executions", async () => {
    const other = await stats(StatsBucketSize.HOUR, "", FROM, TO, "stats-other");
    expect(other.buckets.map((b) => Number(b.count))).toEqual([1, 1, 1]);
    expect(other.total?.count).toBe(3n);
    expect(other.total?.latencyP50Ms).toBe(88_888);
    // The other tenant's agent id does not reach its rows from "stats".
    const { agents } = await as("stats-other");
    const otherAgent = (await agents.listAgents({})).agents[0]!.id;
    const cross = await stats(StatsBucketSize.HOUR, otherAgent);
    expect(cross.buckets).toEqual([]);
    expect(cross.total?.count ?? 0n).toBe(0n);
  });

  it("answers an empty range with no buckets and a zero total", async () => {
    const res = await stats(StatsBucketSize.HOUR, "", "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z");
    expect(res.buckets).toEqual([]);
    expect(res.total?.count ?? 0n).toBe(0n);
    expect(res.total?.successRate ?? 0).toBe(0);
  });

  it("rejects an end not after the start with INVALID_ARGUMENT", async () => {
    for (const [from, to] of [[TO, FROM], [FROM, FROM]]) {
      const err = await errorOf(stats(StatsBucketSize.HOUR, "", from, to));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("end_time");
    }
    const { executions } = await as(tenant, "viewer");
    expect((await errorOf(executions.getExecutionStats({ endTime: ts(TO) }))).code).toBe(Code.InvalidArgument);
  });

  it("rejects a range of more than 10 000 buckets with INVALID_ARGUMENT", async () => {
    const start = Date.parse("2026-01-01T00:00:00Z");
    const iso = (t: number) => new Date(t).toISOString();
    // Exactly 10 000 minutes is allowed; one minute more is not.
    await stats(StatsBucketSize.MINUTE, "", iso(start), iso(start + 10_000 * 60_000));
    const err = await errorOf(stats(StatsBucketSize.MINUTE, "", iso(start), iso(start + 10_001 * 60_000)));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("bucket_size");
    // The same range in hours is fine.
    await stats(StatsBucketSize.HOUR, "", iso(start), iso(start + 10_001 * 60_000));
  });
});

describe("retention", () => {
  const tenant = "keeper";

  it("is 90 days by default and an admin may change it", async () => {
    const { executions } = await as(tenant, "admin");
    expect((await executions.getExecutionRetention({})).retentionDays).toBe(90);
    expect((await executions.updateExecutionRetention({ retentionDays: 7 })).retentionDays).toBe(7);
    expect((await executions.getExecutionRetention({})).retentionDays).toBe(7);
    for (const retentionDays of [0, 3651]) {
      expect((await errorOf(executions.updateExecutionRetention({ retentionDays }))).code).toBe(Code.InvalidArgument);
    }
    expect((await executions.getExecutionRetention({})).retentionDays).toBe(7);
  });

  it("is admin only: an editor is PERMISSION_DENIED", async () => {
    const { executions } = await as(tenant, "editor");
    expect((await errorOf(executions.updateExecutionRetention({ retentionDays: 1 }))).code).toBe(Code.PermissionDenied);
    expect((await errorOf(executions.getExecutionRetention({}))).code).toBe(Code.PermissionDenied);
    expect((await errorOf(executions.purgeExecutions({ olderThan: ts("2099-01-01T00:00:00Z") }))).code).toBe(
      Code.PermissionDenied,
    );
    expect((await (await as(tenant, "admin")).executions.getExecutionRetention({})).retentionDays).toBe(7);
  });

  it("purges exactly the executions created before older_than, with their events and children, and records it", async () => {
    const agentId = await echoAgent(tenant, "keeper-agent");
    const { executions } = await as(tenant, "admin", "purger");
    const cutoff = "2026-02-01T00:00:00.000Z";
    const at = (iso: string) => new Date(iso);
    const [oldParent, lastOld, atCutoff] = await insert(tenant, [
      { agentId, createTime: at("2026-01-10T00:00:00.000Z") },
      { agentId, createTime: at("2026-01-31T23:59:59.999Z") },
      { agentId, createTime: at(cutoff) },
    ]);
    const [oldChild] = await insert(tenant, [{ agentId, createTime: at("2026-01-10T00:00:01.000Z"), parentExecutionId: oldParent!.id }]);
    await insertEvents(tenant, [oldParent!.id, oldChild!.id, lastOld!.id, atCutoff!.id]);
    // More than one delete batch (1000) of old runs.
    const bulk = await insert(
      tenant,
      Array.from({ length: 1_500 }, (_, i) => ({ agentId, createTime: new Date(Date.parse("2025-12-20T00:00:00Z") + i * 1000) })),
    );
    const recent = (await executions.executeAgent({ input: { agentId, prompt: "keep me" } })).execution!;
    const removed = [oldParent!.id, oldChild!.id, lastOld!.id, ...bulk.map((e) => e.id)];
    const kept = [atCutoff!.id, recent.id];
    expect(Object.keys(await eventCounts(tenant, [recent.id]))).toEqual([recent.id]);

    const { purge } = await executions.purgeExecutions({ olderThan: ts(cutoff) });
    expect(purge?.count).toBe(BigInt(removed.length));
    expect(dateOf(purge?.olderThan).toISOString()).toBe(cutoff);
    expect(purge?.actor).toBe("purger");
    expect(purge?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(ms(purge?.createTime)).toBeGreaterThan(Date.now() - 60_000);

    const left = await listAll(executions, {}, 200);
    expect(left.map((e) => e.id).sort()).toEqual([...kept].sort());
    for (const id of [oldParent!.id, oldChild!.id, lastOld!.id]) {
      expect((await errorOf(executions.getExecution({ executionId: id }))).code).toBe(Code.NotFound);
    }
    const events = await eventCounts(tenant, [...removed, ...kept]);
    expect(Object.keys(events).sort()).toEqual([...kept].sort());

    // A second purge finds nothing more; both are listed, newest first.
    const { purge: again } = await executions.purgeExecutions({ olderThan: ts(cutoff) });
    expect(again?.count).toBe(0n);
    const { recentPurges, retentionDays } = await executions.getExecutionRetention({});
    expect(retentionDays).toBe(7);
    expect(recentPurges.map((p) => p.id)).toEqual([again!.id, purge!.id]);
    expect(recentPurges[1]).toEqual(purge);
  });

  it("takes a child created after older_than with its purged parent, and counts it", async () => {
    const agentId = await echoAgent(tenant, "keeper-family");
    const { executions } = await as(tenant, "admin", "purger");
    const [parent] = await insert(tenant, [{ agentId, createTime: new Date("2026-01-01T00:00:00.000Z") }]);
    const [youngChild] = await insert(tenant, [
      { agentId, createTime: new Date("2026-03-01T00:00:00.000Z"), parentExecutionId: parent!.id },
    ]);
    const { purge } = await executions.purgeExecutions({ olderThan: ts("2026-02-01T00:00:00.000Z") });
    // The child cannot outlive its parent (the foreign key cascades)...
    expect((await errorOf(executions.getExecution({ executionId: youngChild!.id }))).code).toBe(Code.NotFound);
    // ...so the record of the purge must say two executions were removed.
    expect(purge?.count).toBe(2n);
  });

  it("applies each tenant's retention in the periodic job, recording purges by \"retention\"", async () => {
    const now = new Date("2025-12-01T00:00:00.000Z");
    const x = "retention-x"; // 1 day: cutoff 2025-11-30T00:00Z
    const y = "retention-y"; // default 90 days: cutoff 2025-09-02T00:00Z
    await (await as(x, "admin")).executions.updateExecutionRetention({ retentionDays: 1 });
    const xAgent = await echoAgent(x, "x-agent");
    const yAgent = await echoAgent(y, "y-agent");
    const [xOld, xJustOld, xAtCutoff, xYoung] = await insert(x, [
      { agentId: xAgent, createTime: new Date("2025-11-20T00:00:00.000Z") },
      { agentId: xAgent, createTime: new Date("2025-11-29T23:59:59.999Z") },
      { agentId: xAgent, createTime: new Date("2025-11-30T00:00:00.000Z") },
      { agentId: xAgent, createTime: new Date("2025-11-30T18:00:00.000Z") },
    ]);
    const [xOldChild] = await insert(x, [
      { agentId: xAgent, createTime: new Date("2025-11-20T00:00:01.000Z"), parentExecutionId: xOld!.id },
    ]);
    await insertEvents(x, [xOld!.id, xOldChild!.id, xYoung!.id]);
    const [yOld, yJustOld, yAtCutoff, yMonthOld] = await insert(y, [
      { agentId: yAgent, createTime: new Date("2025-06-01T00:00:00.000Z") },
      { agentId: yAgent, createTime: new Date("2025-09-01T23:59:59.999Z") },
      { agentId: yAgent, createTime: new Date("2025-09-02T00:00:00.000Z") },
      { agentId: yAgent, createTime: new Date("2025-11-01T00:00:00.000Z") },
    ]);
    const othersBefore = await (await as("keeper", "admin")).executions.getExecutionRetention({});

    expect(await applyRetention(s.orm, now)).toBe(5);

    const remaining = async (tenant: string) =>
      (await listAll((await as(tenant, "admin")).executions, {}, 200)).map((e) => e.id).sort();
    expect(await remaining(x)).toEqual([xAtCutoff!.id, xYoung!.id].sort());
    expect(await remaining(y)).toEqual([yAtCutoff!.id, yMonthOld!.id].sort());
    expect(Object.keys(await eventCounts(x, [xOld!.id, xOldChild!.id, xJustOld!.id, xYoung!.id]))).toEqual([xYoung!.id]);
    void yOld;
    void yJustOld;

    const purgesOf = async (tenant: string) => (await (await as(tenant, "admin")).executions.getExecutionRetention({})).recentPurges;
    const [xPurge, ...xMore] = await purgesOf(x);
    expect(xMore).toEqual([]);
    expect(xPurge).toMatchObject({ count: 3n, actor: "retention" });
    expect(dateOf(xPurge?.olderThan).toISOString()).toBe("2025-11-30T00:00:00.000Z");
    const [yPurge, ...yMore] = await purgesOf(y);
    expect(yMore).toEqual([]);
    expect(yPurge).toMatchObject({ count: 2n, actor: "retention" });
    expect(dateOf(yPurge?.olderThan).toISOString()).toBe("2025-09-02T00:00:00.000Z");
    // Tenants with nothing past their retention get no purge record.
    expect(await (await as("keeper", "admin")).executions.getExecutionRetention({})).toEqual(othersBefore);

    // Run again at the same time: nothing left to do, nothing recorded.
    expect(await applyRetention(s.orm, now)).toBe(0);
    expect(await purgesOf(x)).toHaveLength(1);
    expect(await purgesOf(y)).toHaveLength(1);
  });
});
