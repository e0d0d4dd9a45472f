import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type { EntityManager } from "@mikro-orm/postgresql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { ExecutionStatus, type Execution as ExecutionMessage } from "../../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService, StatsBucketSize } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Role } from "../../src/auth/principal.ts";
import { scopeToTenant } from "../../src/db/tenant.ts";
import { Execution } from "../../src/executions/execution.entity.ts";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { observable } from "../support/observable.ts";

/*
 * Tenant isolation of ExecutionService. Tenant A runs executions (a parent
 * with a child, one still RUNNING, one with a request id) and purges once;
 * tenant B, as editor and as admin, calls every ExecutionService RPC on A's
 * ids. Each answer must be exactly what B gets for an id that never existed
 * (code, message and details, with the id replaced by a placeholder), B's
 * listings, statistics and purges never include A's, and A's history is
 * unchanged afterwards.
 */

const NEVER = "00000000-0000-4000-8000-000000000000";
const A = "tenant-a";
const B = "tenant-b";
const A_REQUEST_ID = "3b0c5e1a-2f47-4d8e-9c61-7a5b4e3d2c10";

type ExecClient = Client<typeof ExecutionService>;

let s: TestServer;
const clients = new Map<string, { agents: Client<typeof AgentService>; executions: ExecClient }>();

async function as(tenant: string, role: Role, subject = `${tenant}-${role}`) {
  const key = `${tenant}|${role}|${subject}`;
  let found = clients.get(key);
  if (!found) {
    const transport = connectJson(s.url, await s.token(tenant, [role], subject));
    found = { agents: clientOf(AgentService, transport), executions: clientOf(ExecutionService, transport) };
    clients.set(key, found);
  }
  return found;
}


/** Reads a server stream to its end (its error surfaces here). */
async function drain(stream: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of stream) n++;
  return n;
}

async function echoAgent(tenant: string, name: string): Promise<string> {
  const { agents } = await as(tenant, "editor");
  return (await agents.createAgent({ agent: { name, role: "echo" }, templateId: "builtin-echo" })).agent!.id;
}

/** Every execution of a tenant, newest first, as its admin lists them. */
async function listedBy(tenant: string, filters: Parameters<ExecClient["listExecutions"]>[0] = {}): Promise<ExecutionMessage[]> {
  const { executions } = await as(tenant, "admin");
  const all: ExecutionMessage[] = [];
  let pageToken = "";
  do {
    const page = await executions.listExecutions({ ...filters, pageSize: 200, pageToken });
    all.push(...page.executions);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}

// Two days either side of now: every run of this file, in HOUR or DAY buckets.
const WHOLE_RANGE = {
  startTime: timestampFromDate(new Date(Date.now() - 2 * 86_400_000)),
  endTime: timestampFromDate(new Date(Date.now() + 2 * 86_400_000)),
};
const FUTURE = timestampFromDate(new Date("2100-01-01T00:00:00Z"));

let aAgent: string;
let aParent: ExecutionMessage; // finished, with a request id and a session
let aChild: ExecutionMessage; // finished child of aParent
let aRunning: string; // still RUNNING (on another instance)
let bAgent: string;
let bRun: ExecutionMessage;

/** A's whole execution history, as A's admin reads it. */
async function snapshotOfA() {
  const { executions } = await as(A, "admin");
  const listed = await listedBy(A);
  return {
    listed,
    trees: await Promise.all(listed.map(async (e) => (await executions.getExecution({ executionId: e.id })).execution)),
    stats: await executions.getExecutionStats({ ...WHOLE_RANGE, bucketSize: StatsBucketSize.DAY }),
    retention: await executions.getExecutionRetention({}),
  };
}
let before: Awaited<ReturnType<typeof snapshotOfA>>;

beforeAll(async () => {
  s = await startTestServer();
  aAgent = await echoAgent(A, "a-agent");
  const a = (await as(A, "editor", "a-user")).executions;
  aParent = (await a.executeAgent({ input: { agentId: aAgent, prompt: "a secret plan", sessionId: "a-session", requestId: A_REQUEST_ID } }))
    .execution!;
  aChild = (await a.executeAgent({ input: { agentId: aAgent, prompt: "a sub task", parentExecutionId: aParent.id } })).execution!;

  // A run still going on another instance, and an old one A purges.
  const em = s.orm.em.fork() as EntityManager;
  scopeToTenant(em, A);
  const fields = {
    agentId: aAgent, agentVersion: 1, parentExecutionId: null, sessionId: "", prompt: "p", input: null, model: "echo",
    response: "", inputTokens: 0, outputTokens: 0, costMicros: 0, latencyMs: null, timeToFirstOutputMs: null,
    errorCode: "", errorMessage: "", errorDetail: "", requestId: null, requestHash: "", creator: "a-user", testModel: true,
    instanceId: "another-instance", endTime: null,
  };
  const running = em.create(Execution, {
    ...fields, status: "RUNNING", createTime: new Date(), startTime: new Date(), heartbeatTime: new Date(),
  } as Execution);
  em.create(Execution, {
    ...fields, status: "SUCCEEDED", createTime: new Date("2026-01-01T00:00:00Z"), startTime: null, heartbeatTime: null,
  } as Execution);
  await em.flush();
  aRunning = running.id;
  const { executions: aAdmin } = await as(A, "admin", "a-admin");
  await aAdmin.updateExecutionRetention({ retentionDays: 30 });
  expect((await aAdmin.purgeExecutions({ olderThan: timestampFromDate(new Date("2026-02-01T00:00:00Z")) })).purge?.count).toBe(1n);

  bAgent = await echoAgent(B, "b-agent");
  bRun = (await (await as(B, "editor", "b-user")).executions.executeAgent({ input: { agentId: bAgent, prompt: "b's own run" } })).execution!;

  before = await snapshotOfA();
  expect(before.listed).toHaveLength(3);
  expect(before.retention.recentPurges).toHaveLength(1);
});
afterAll(() => s?.close());

/** Every ExecutionService RPC that takes an execution id, as B would call it. */
function executionCalls(client: ExecClient): [string, (executionId: string) => Promise<unknown>][] {
  return [
    ["GetExecution", (executionId) => client.getExecution({ executionId })],
    ["CancelExecution", (executionId) => client.cancelExecution({ executionId })],
    ["WatchExecution", (executionId) => drain(client.watchExecution({ executionId }))],
    ["WatchExecution(after 1)", (executionId) => drain(client.watchExecution({ executionId, afterSequence: 1n }))],
  ];
}

describe.each([
  { role: "editor" as const, subject: "b-user" },
  { role: "admin" as const, subject: "b-admin" },
])("tenant B as $role", ({ role, subject }) => {
  it("gets for GetExecution, CancelExecution and WatchExecution on A's executions the NOT_FOUND of an id that never existed", async () => {
    const { executions } = await as(B, role, subject);
    for (const [target, id] of [["parent", aParent.id], ["child", aChild.id], ["running", aRunning]] as const) {
      for (const [rpc, call] of executionCalls(executions)) {
        const label = `${rpc} on A's ${target}`;
        const foreign = await errorOf(call(id));
        const never = await errorOf(call(NEVER));
        expect(foreign.code, label).toBe(Code.NotFound);
        expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason, label).toBe("EXECUTION_NOT_FOUND");
        expect(observable(foreign, id), label).toEqual(observable(never, NEVER));
      }
    }
  });

  it("gets for ExecuteAgent and StreamExecuteAgent on A's agent the NOT_FOUND of a random agent id", async () => {
    const { executions } = await as(B, role, subject);
    const random = crypto.randomUUID();
    const calls: [string, (agentId: string) => Promise<unknown>][] = [
      ["ExecuteAgent", (agentId) => executions.executeAgent({ input: { agentId, prompt: "steal" } })],
      ["StreamExecuteAgent", (agentId) => drain(executions.streamExecuteAgent({ input: { agentId, prompt: "steal" } }))],
    ];
    for (const [rpc, call] of calls) {
      const foreign = await errorOf(call(aAgent));
      const never = await errorOf(call(random));
      expect(foreign.code, rpc).toBe(Code.NotFound);
      expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason, rpc).toBe("AGENT_NOT_FOUND");
      expect(observable(foreign, aAgent), rpc).toEqual(observable(never, random));
    }
  });

  it("gets NOT_FOUND for a child run of A's execution, as for a parent that never existed, and stores nothing", async () => {
    const { executions } = await as(B, role, subject);
    const countBefore = (await listedBy(B)).length;
    const calls: [string, (parentExecutionId: string) => Promise<unknown>][] = [
      ["ExecuteAgent", (parentExecutionId) => executions.executeAgent({ input: { agentId: bAgent, prompt: "child", parentExecutionId } })],
      [
        "StreamExecuteAgent",
        (parentExecutionId) => drain(executions.streamExecuteAgent({ input: { agentId: bAgent, prompt: "child", parentExecutionId } })),
      ],
    ];
    for (const [rpc, call] of calls) {
      for (const parent of [aParent.id, aChild.id, aRunning]) {
        const foreign = await errorOf(call(parent));
        const never = await errorOf(call(NEVER));
        expect(foreign.code, rpc).toBe(Code.NotFound);
        expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason, rpc).toBe("EXECUTION_NOT_FOUND");
        expect(observable(foreign, parent), rpc).toEqual(observable(never, NEVER));
      }
    }
    expect(await listedBy(B)).toHaveLength(countBefore);
  });

  it("lists none of A's executions, whatever the filters", async () => {
    const { executions } = await as(B, role, subject);
    const aIds = new Set(before.listed.map((e) => e.id));
    const all = (await executions.listExecutions({ pageSize: 200 })).executions;
    expect(all.length).toBeGreaterThan(0);
    expect(all.filter((e) => aIds.has(e.id))).toEqual([]);
    expect(all.every((e) => e.agentId === bAgent)).toBe(true);
    const filtered = [
      { agentId: aAgent },
      { sessionId: "a-session" },
      { statuses: [ExecutionStatus.RUNNING] },
      { model: "echo", ...WHOLE_RANGE, agentId: aAgent },
    ];
    for (const filter of filtered) {
      expect((await executions.listExecutions({ ...filter, pageSize: 200 })).executions, Object.keys(filter).join()).toEqual([]);
    }
  });

  it("cannot continue A's listing with A's page token", async () => {
    const { executions } = await as(B, role, subject);
    const page = await (await as(A, "admin")).executions.listExecutions({ pageSize: 1 });
    expect(page.nextPageToken).not.toBe("");
    const err = await errorOf(executions.listExecutions({ pageSize: 1, pageToken: page.nextPageToken }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("INVALID_PAGE_TOKEN");
  });

  it("counts none of A's executions in its statistics", async () => {
    const { executions } = await as(B, role, subject);
    const own = (await listedBy(B)).length;
    for (const bucketSize of [StatsBucketSize.HOUR, StatsBucketSize.DAY]) {
      const res = await executions.getExecutionStats({ ...WHOLE_RANGE, bucketSize });
      expect(res.total?.count).toBe(BigInt(own));
      expect(res.buckets.reduce((n, b) => n + b.count, 0n)).toBe(BigInt(own));
    }
    const ofA = await executions.getExecutionStats({ ...WHOLE_RANGE, agentId: aAgent, bucketSize: StatsBucketSize.DAY });
    expect(ofA.buckets).toEqual([]);
    expect(ofA.total?.count ?? 0n).toBe(0n);
  });
});

describe("tenant B", () => {
  it("starts its own execution with a request_id A used, never getting A's", async () => {
    const { executions } = await as(B, "editor", "b-user");
    const { execution } = await executions.executeAgent({
      input: { agentId: bAgent, prompt: "a secret plan", sessionId: "a-session", requestId: A_REQUEST_ID },
    });
    expect(execution?.id).not.toBe(aParent.id);
    expect(execution?.agentId).toBe(bAgent);
    expect(execution?.requestId).toBe(A_REQUEST_ID);
    expect(execution?.creator).toBe("b-user");
    // A different request under the same id is B's own conflict, not A's execution.
    const err = await errorOf(executions.executeAgent({ input: { agentId: bAgent, prompt: "other", requestId: A_REQUEST_ID } }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.findDetails(ErrorInfoSchema)[0]?.metadata.execution_id).toBe(execution?.id);
  });

  it("as editor is refused PurgeExecutions and the retention RPCs by role", async () => {
    const { executions } = await as(B, "editor", "b-user");
    const calls: [string, () => Promise<unknown>][] = [
      ["PurgeExecutions", () => executions.purgeExecutions({ olderThan: FUTURE })],
      ["GetExecutionRetention", () => executions.getExecutionRetention({})],
      ["UpdateExecutionRetention", () => executions.updateExecutionRetention({ retentionDays: 1 })],
    ];
    for (const [rpc, call] of calls) {
      expect((await errorOf(call())).code, rpc).toBe(Code.PermissionDenied);
    }
  });

  it("as admin sees its own retention and none of A's purges, and changes only its own", async () => {
    const { executions } = await as(B, "admin", "b-admin");
    const retention = await executions.getExecutionRetention({});
    expect(retention.retentionDays).toBe(90);
    expect(retention.recentPurges).toEqual([]);
    expect((await executions.updateExecutionRetention({ retentionDays: 5 })).retentionDays).toBe(5);
    expect((await (await as(A, "admin")).executions.getExecutionRetention({})).retentionDays).toBe(30);
  });

  it("as admin purges only its own executions, and records only its own purge", async () => {
    const { executions } = await as(B, "admin", "b-admin");
    const own = await listedBy(B);
    expect(own.map((e) => e.id)).toContain(bRun.id);
    const { purge } = await executions.purgeExecutions({ olderThan: FUTURE });
    expect(purge?.count).toBe(BigInt(own.length));
    expect(purge?.actor).toBe("b-admin");
    expect(await listedBy(B)).toEqual([]);
    const { recentPurges } = await executions.getExecutionRetention({});
    expect(recentPurges.map((p) => p.id)).toEqual([purge!.id]);
    expect((await (await as(A, "admin")).executions.getExecutionRetention({})).recentPurges).toEqual(before.retention.recentPurges);
  });
});

describe("tenant A afterwards", () => {
  it("finds its executions, children, statistics, retention and purges exactly as before", async () => {
    const after = await snapshotOfA();
    expect(after).toEqual(before);
    const tree = after.trees.find((t) => t?.id === aParent.id);
    expect(tree?.children.map((c) => c.id)).toEqual([aChild.id]);
    expect(after.trees.find((t) => t?.id === aRunning)?.status).toBe(ExecutionStatus.RUNNING);
    expect(after.listed.find((e) => e.id === aParent.id)?.requestId).toBe(A_REQUEST_ID);
  });
});
