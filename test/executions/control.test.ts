import { randomBytes, randomUUID } from "node:crypto";
import * as http from "node:http";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentState, AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ExecutionStatus, type Execution, type ExecutionEvent } from "../../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { createAppServer } from "../../src/server.ts";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import { eventually } from "../support/faults.ts";
import { upstream, type Route, type Upstream } from "../support/upstream.ts";
import { sleep, within } from "../support/wait.ts";
import { freshStore, startMain, type MainProcess, type Store } from "../support/main-process.ts";
import { startTestServer, TEST_CREDENTIAL_KEYS, TEST_ENV, TEST_SECRET, type TestServer } from "../support/server.ts";

/*
 * Controlling runs: cancel, client disconnects and resumption, idempotency,
 * concurrency, what may run, and runs across server processes (a cancel
 * through another instance, a crash, a graceful shutdown).
 */

const TENANT = "exec-control";

let s: TestServer;
let agents: ReturnType<typeof clientOf<typeof AgentService>>;
let creds: ReturnType<typeof clientOf<typeof CredentialService>>;
let executions: ReturnType<typeof clientOf<typeof ExecutionService>>;

// ---------------------------------------------------------------- fakes --

function sse(res: http.ServerResponse, data: unknown): boolean {
  return res.write(`data: ${JSON.stringify(data)}\n\n`);
}

/** SSE output events every `everyMs`, `count` of them (forever when undefined), then the end. */
function slowStream(everyMs: number, count?: number): Route {
  return async (_rec, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (let i = 0; count === undefined || i < count; i++) {
      if (res.destroyed || res.writableEnded) return;
      sse(res, { output: `w${i} ` });
      await sleep(everyMs);
    }
    sse(res, { usage: { input_tokens: 1, output_tokens: count ?? 0 } });
    res.end();
  };
}

// -------------------------------------------------------------- helpers --

type Input = MessageInitShape<typeof ExecutionService.method.executeAgent.input>["input"];
type Executions = ReturnType<typeof clientOf<typeof ExecutionService>>;
type Agents = ReturnType<typeof clientOf<typeof AgentService>>;

async function agent(name: string, config: JsonObject, extra: { systemPrompt?: string; credentialIds?: string[] } = {}, client: Agents = agents) {
  const { agent } = await client.createAgent({
    agent: {
      name,
      role: "test",
      agentType: AgentType.WEBHOOK,
      config,
      systemPrompt: extra.systemPrompt ?? "",
      credentialIds: extra.credentialIds ?? [],
    },
  });
  return agent!;
}

async function execute(input: Input, client: Executions = executions): Promise<Execution> {
  const { execution } = await client.executeAgent({ input });
  return execution!;
}

const outputsOf = (events: ExecutionEvent[]) =>
  events.flatMap((e) => (e.event.case === "output" ? [e.event.value.text] : []));
const completedOf = (events: ExecutionEvent[]) => {
  const last = events.at(-1)?.event;
  return last?.case === "completed" ? last.value : undefined;
};
const requestsFor = (agentId: string) =>
  fake.requests.filter((r) => (r.json?.agent as { id?: string } | undefined)?.id === agentId);

/** Reads a stream to its end in the background, keeping every event. */
function drain(stream: AsyncIterable<{ event?: ExecutionEvent }>): { events: ExecutionEvent[]; done: Promise<unknown> } {
  const events: ExecutionEvent[] = [];
  const done = (async () => {
    for await (const res of stream) events.push(res.event!);
  })().then(
    () => undefined,
    (err: unknown) => err,
  );
  return { events, done };
}

let fake: Upstream;

beforeAll(async () => {
  s = await startTestServer();
  const editor = connectJson(s.url, await s.token(TENANT, ["editor"]));
  agents = clientOf(AgentService, editor);
  executions = clientOf(ExecutionService, editor);
  creds = clientOf(CredentialService, connectJson(s.url, await s.token(TENANT, ["admin"])));
  fake = await upstream();
  fake.route("/slow-forever", slowStream(100));
  fake.route("/slow-finite", slowStream(80, 8));
  fake.route("/hang", () => {});
  fake.route("/json", async (_rec, res) => {
    await sleep(150);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ output: "done" }));
  });
  fake.route("/system-prompt", (rec, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ output: String(rec.json?.system_prompt) }));
  });
});
afterAll(async () => {
  await fake?.close();
  await s?.close();
});

// --------------------------------------------------------------- cancel --

describe("CancelExecution", () => {
  it("stops a streaming run: the stream ends CANCELLED, the webhook call is aborted, a second cancel changes nothing", async () => {
    const a = await agent("cancel-mid-stream", { endpoint: `${fake.url}/slow-forever` });
    const events: ExecutionEvent[] = [];
    let cancelled: Execution | undefined;
    for await (const res of executions.streamExecuteAgent(
      { input: { agentId: a.id, prompt: "go" } },
      { signal: AbortSignal.timeout(10_000) },
    )) {
      events.push(res.event!);
      if (!cancelled && outputsOf(events).length >= 3) {
        cancelled = (await executions.cancelExecution({ executionId: events[0]!.executionId })).execution!;
      }
    }
    const id = events[0]!.executionId;
    expect(cancelled?.status).toBe(ExecutionStatus.CANCELLED);
    expect(cancelled?.error?.code).toBe("CANCELLED");
    expect(cancelled?.endTime).toBeDefined();

    const completed = completedOf(events);
    expect(completed?.id).toBe(id);
    expect(completed?.status).toBe(ExecutionStatus.CANCELLED);
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => BigInt(i + 1)));

    const [rec] = requestsFor(a.id);
    await within(rec!.aborted, 2000, "the webhook sees its request aborted");

    const { execution: stored } = await executions.getExecution({ executionId: id });
    expect(stored?.status).toBe(ExecutionStatus.CANCELLED);
    const { execution: again } = await executions.cancelExecution({ executionId: id });
    expect(again?.status).toBe(ExecutionStatus.CANCELLED);
    expect(again?.endTime).toEqual(stored?.endTime);
    expect(again?.error).toEqual(stored?.error);
  });

  it("leaves a finished execution as it was", async () => {
    const a = await agent("cancel-finished", { model: "echo" });
    const done = await execute({ agentId: a.id, prompt: "already done" });
    expect(done.status).toBe(ExecutionStatus.SUCCEEDED);
    const { execution } = await executions.cancelExecution({ executionId: done.id });
    expect(execution?.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(execution?.response).toBe("already done");
    expect(execution?.error).toBeUndefined();
  });
});

// ------------------------------------------------- disconnect and resume --

describe("a client that goes away", () => {
  it("does not stop the run; WatchExecution resumes after the last seen event and replays stored events later", async () => {
    const a = await agent("disconnect", { endpoint: `${fake.url}/slow-finite` });
    const client = new AbortController();
    const seen: ExecutionEvent[] = [];
    const deadline = setTimeout(() => client.abort(), 10_000);
    try {
      for await (const res of executions.streamExecuteAgent({ input: { agentId: a.id, prompt: "go" } }, { signal: client.signal })) {
        seen.push(res.event!);
        if (outputsOf(seen).length >= 2) {
          client.abort();
          break;
        }
      }
    } catch (err) {
      if (!client.signal.aborted) throw err;
    } finally {
      clearTimeout(deadline);
    }
    expect(outputsOf(seen)).toEqual(["w0 ", "w1 "]);
    const id = seen[0]!.executionId;
    const last = seen.at(-1)!.sequence;

    const rest: ExecutionEvent[] = [];
    for await (const res of executions.watchExecution({ executionId: id, afterSequence: last }, { signal: AbortSignal.timeout(10_000) })) {
      rest.push(res.event!);
    }
    expect(rest[0]?.sequence).toBe(last + 1n);
    expect(rest.map((e) => e.sequence)).toEqual(rest.map((_, i) => last + BigInt(i + 1)));
    const completed = completedOf(rest);
    expect(completed?.status).toBe(ExecutionStatus.SUCCEEDED);
    const full = ["w0 ", "w1 ", "w2 ", "w3 ", "w4 ", "w5 ", "w6 ", "w7 "];
    expect([...outputsOf(seen), ...outputsOf(rest)]).toEqual(full);
    expect(completed?.response).toBe(full.join(""));
    expect(requestsFor(a.id)[0]?.wasAborted).toBe(false);

    const all = [...seen, ...rest];
    // Once finished, the events come from the database, from any point.
    await eventually(async () => {
      const [row] = await s.db.sql<{ n: number }>("select count(*)::int as n from execution_events where execution_id = ?", [id]);
      return row!.n === all.length ? true : undefined;
    }, 5000, "every event stored");
    await sleep(100);
    for (const after of [0n, 3n, BigInt(all.length - 1)]) {
      const replay: ExecutionEvent[] = [];
      for await (const res of executions.watchExecution({ executionId: id, afterSequence: after }, { signal: AbortSignal.timeout(10_000) })) {
        replay.push(res.event!);
      }
      const expected = all.filter((e) => e.sequence > after);
      expect(replay.map((e) => e.sequence)).toEqual(expected.map((e) => e.sequence));
      expect(replay.map((e) => e.event.case)).toEqual(expected.map((e) => e.event.case));
      expect(outputsOf(replay)).toEqual(outputsOf(expected));
      expect(completedOf(replay)?.status).toBe(ExecutionStatus.SUCCEEDED);
    }
    const { execution } = await executions.getExecution({ executionId: id });
    expect(execution?.status).toBe(ExecutionStatus.SUCCEEDED);
  });
});

describe("stored events", () => {
  it("keeps every event when a write of events fails once: the replay has no gaps", async () => {
    const a = await agent("events-refused-once", { endpoint: `${fake.url}/slow-finite` });
    // Schema changes: as the owner.
    const conn = { execute: (sql: string) => s.db.sql(sql) };
    const logsBefore = s.logs.length;
    await conn.execute(`create or replace function test_refuse_events() returns trigger language plpgsql as $$
      begin raise exception 'execution events refused for the test'; end $$`);
    await conn.execute("create trigger test_refuse_events before insert on execution_events for each row execute function test_refuse_events()");
    let refused = true;
    try {
      const running = execute({ agentId: a.id, prompt: "go" });
      // One periodic write of events fails, then the database takes them again.
      await eventually(
        () => (s.logs.slice(logsBefore).some((l) => l.includes("could not store execution events")) ? true : undefined),
        5000,
        "a refused write of events",
      );
      await conn.execute("drop trigger test_refuse_events on execution_events");
      refused = false;
      const execution = await within(running, 10_000, "the run ends");
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);

      await sleep(300);
      const replay: ExecutionEvent[] = [];
      for await (const res of executions.watchExecution({ executionId: execution.id, afterSequence: 0n }, { signal: AbortSignal.timeout(10_000) })) {
        replay.push(res.event!);
      }
      expect(replay.map((e) => e.sequence)).toEqual(replay.map((_, i) => BigInt(i + 1)));
      expect(replay[0]?.event.case).toBe("started");
      expect(outputsOf(replay)).toEqual(["w0 ", "w1 ", "w2 ", "w3 ", "w4 ", "w5 ", "w6 ", "w7 "]);
      expect(completedOf(replay)?.status).toBe(ExecutionStatus.SUCCEEDED);
    } finally {
      if (refused) await conn.execute("drop trigger if exists test_refuse_events on execution_events");
      await conn.execute("drop function if exists test_refuse_events()");
    }
  });
});

// ---------------------------------------------------------- idempotency --

describe("request_id", () => {
  it("returns the same execution for a repeated request and calls the agent once", async () => {
    const a = await agent("idem-repeat", { endpoint: `${fake.url}/json` });
    const requestId = randomUUID();
    const first = await execute({ agentId: a.id, prompt: "once", requestId });
    const second = await execute({ agentId: a.id, prompt: "once", requestId });
    expect(first.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(second.id).toBe(first.id);
    expect(second.requestId).toBe(requestId);
    expect(second.response).toBe("done");
    expect(requestsFor(a.id)).toHaveLength(1);
  });

  it("refuses the same request_id with a different prompt as ALREADY_EXISTS", async () => {
    const a = await agent("idem-conflict", { model: "echo" });
    const requestId = randomUUID();
    const first = await execute({ agentId: a.id, prompt: "first", requestId });
    const err = await errorOf(execute({ agentId: a.id, prompt: "second", requestId }));
    expect(err.code).toBe(Code.AlreadyExists);
    const info = err.findDetails(ErrorInfoSchema)[0];
    expect(info?.reason).toBe("REQUEST_ID_REUSED");
    expect(info?.metadata.execution_id).toBe(first.id);
    expect((await executions.listExecutions({ agentId: a.id })).executions).toHaveLength(1);
  });

  it("runs once for five concurrent calls with one request_id", async () => {
    const a = await agent("idem-concurrent", { endpoint: `${fake.url}/json` });
    const requestId = randomUUID();
    const results = await Promise.all(Array.from({ length: 5 }, () => execute({ agentId: a.id, prompt: "together", requestId })));
    expect(new Set(results.map((e) => e.id)).size).toBe(1);
    expect(results.every((e) => e.status === ExecutionStatus.SUCCEEDED)).toBe(true);
    expect((await executions.listExecutions({ agentId: a.id })).executions).toHaveLength(1);
    expect(requestsFor(a.id)).toHaveLength(1);
  });
});

// ---------------------------------------------------------- concurrency --

describe("concurrent executions", () => {
  it("runs ten executions of one agent in parallel, each to SUCCEEDED with its own id", async () => {
    const a = await agent("parallel-echo", { model: "echo" });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => execute({ agentId: a.id, prompt: `run number ${i}` })));
    expect(new Set(results.map((e) => e.id)).size).toBe(10);
    results.forEach((e, i) => {
      expect(e.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(e.response).toBe(`run number ${i}`);
      expect(e.testModel).toBe(true);
    });
    expect((await executions.listExecutions({ agentId: a.id })).executions).toHaveLength(10);
  });
});

// ------------------------------------------------------- what may run --

describe("what may run", () => {
  it("refuses an agent that is not ACTIVE with FAILED_PRECONDITION and stores nothing", async () => {
    const a = await agent("inactive", { model: "echo" });
    await agents.updateAgent({ agentId: a.id, agent: { state: AgentState.INACTIVE }, updateMask: { paths: ["state"] } });
    const err = await errorOf(execute({ agentId: a.id, prompt: "p" }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("AGENT_NOT_ACTIVE");
    expect((await executions.listExecutions({ agentId: a.id })).executions).toEqual([]);
  });

  it("runs a pinned agent_version, else the active one", async () => {
    const a = await agent("pinned", { endpoint: `${fake.url}/system-prompt` }, { systemPrompt: "system v1" });
    await agents.updateAgent({ agentId: a.id, agent: { systemPrompt: "system v2" }, updateMask: { paths: ["system_prompt"] } });
    const pinned = await execute({ agentId: a.id, prompt: "p", agentVersion: 1 });
    expect(pinned.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(pinned.agentVersion).toBe(1);
    expect(pinned.response).toBe("system v1");
    const active = await execute({ agentId: a.id, prompt: "p" });
    expect(active.agentVersion).toBe(2);
    expect(active.response).toBe("system v2");
    expect(requestsFor(a.id).map((r) => (r.json?.agent as { version?: number }).version)).toEqual([1, 2]);

    const missing = await errorOf(execute({ agentId: a.id, prompt: "p", agentVersion: 9 }));
    expect(missing.code).toBe(Code.NotFound);
  });

  it("answers NOT_FOUND for an unknown agent", async () => {
    const err = await errorOf(execute({ agentId: randomUUID(), prompt: "p" }));
    expect(err.code).toBe(Code.NotFound);
  });

  it("refuses an agent whose bound credential is REVOKED with FAILED_PRECONDITION, storing and calling nothing", async () => {
    const { credential } = await creds.createCredential({
      credential: { name: "revoked-secret", type: CredentialType.WEBHOOK_SECRET },
      secret: { value: { case: "webhookSecret", value: { secret: "s3cret" } } },
    });
    const a = await agent("revoked-credential", { endpoint: `${fake.url}/json` }, { credentialIds: [credential!.id] });
    await creds.revokeCredential({ credentialId: credential!.id });
    const err = await errorOf(execute({ agentId: a.id, prompt: "p" }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CREDENTIAL_REVOKED");
    expect((await executions.listExecutions({ agentId: a.id })).executions).toEqual([]);
    expect(requestsFor(a.id)).toEqual([]);
  });
});

// -------------------------------------------------- graceful shutdown --

describe("graceful shutdown", () => {
  it("ends runs in flight within the grace period: finished ones SUCCEEDED, the rest FAILED, none RUNNING", async () => {
    // A second server over the same database, so this file's server stays up.
    const logs: string[] = [];
    const config = loadConfig({
      JWT_SECRET: TEST_SECRET,
      CREDENTIAL_KEYS: TEST_CREDENTIAL_KEYS,
      HOST: "127.0.0.1",
      PORT: "0",
      SHUTDOWN_GRACE_MS: "500",
      ...TEST_ENV,
    });
    const server = createAppServer({ config, orm: s.orm, logger: createLogger("debug", (l) => void logs.push(l)) });
    const port = await server.listen(0, "127.0.0.1");
    server.health.setServing(true);
    let stopping: Promise<void> | undefined;
    try {
      const there = clientOf(ExecutionService, connectJson(`http://127.0.0.1:${port}`, await s.token(TENANT, ["editor"])));

      const forever = await agent("shutdown-forever", { endpoint: `${fake.url}/slow-forever` });
      const quick = await agent("shutdown-quick", { endpoint: `${fake.url}/json` });
      const signal = AbortSignal.timeout(10_000);
      const long = drain(there.streamExecuteAgent({ input: { agentId: forever.id, prompt: "p" } }, { signal }));
      const short = drain(there.streamExecuteAgent({ input: { agentId: quick.id, prompt: "p" } }, { signal }));
      // Both runs are going: the streams have started and the webhooks have their requests.
      await eventually(
        () => (long.events.length && short.events.length && requestsFor(forever.id).length && requestsFor(quick.id).length ? true : undefined),
        5000,
        "both runs reach their webhooks",
      );
      const longId = long.events[0]!.executionId;
      const shortId = short.events[0]!.executionId;

      // The quick webhook answers 150 ms after its request: still in flight when shutdown begins.
      expect(completedOf(short.events)).toBeUndefined();
      const t0 = Date.now();
      await within((stopping = server.shutdown()), 5000, "shutdown");
      expect(Date.now() - t0).toBeLessThan(3000);
      await within(Promise.all([long.done, short.done]), 3000, "the streams end");

      const { execution: stopped } = await executions.getExecution({ executionId: longId });
      expect(stopped?.status).toBe(ExecutionStatus.FAILED);
      expect(stopped?.error?.code).toBe("UNAVAILABLE");
      expect(stopped?.error?.message).toMatch(/shut down/);
      expect(stopped?.endTime).toBeDefined();
      await within(requestsFor(forever.id)[0]!.aborted, 2000, "the webhook sees the stopped run's request aborted");

      const { execution: finished } = await executions.getExecution({ executionId: shortId });
      expect(finished?.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(finished?.response).toBe("done");
      expect((await executions.listExecutions({ statuses: [ExecutionStatus.RUNNING, ExecutionStatus.QUEUED] })).executions).toEqual([]);
    } finally {
      await (stopping ?? server.shutdown());
    }
  });
});

// ------------------------------------------------- separate processes --

const CHILD_KEYS = `k1:${randomBytes(32).toString("base64")}`;

/** Starts src/main.ts as instance `instanceId` on `store`. */
function startProcess(store: Store, instanceId: string, extraEnv: Record<string, string> = {}): Promise<MainProcess> {
  return startMain({
    JWT_SECRET: TEST_SECRET,
    CREDENTIAL_KEYS: CHILD_KEYS,
    INSTANCE_ID: instanceId,
    PURGE_INTERVAL_MS: "0",
    RETENTION_INTERVAL_MS: "0",
    LOG_LEVEL: "info",
    ...store.env,
    ...extraEnv,
  });
}

async function clientsOf(proc: MainProcess) {
  const transport = connectJson(proc.url, await mintToken(new TextEncoder().encode(TEST_SECRET), {
    tenants: [TENANT],
    roles: ["editor"],
    subject: "process-test",
    ttl: "10m",
  }));
  return { agents: clientOf(AgentService, transport), executions: clientOf(ExecutionService, transport) };
}

describe("two server processes on one database", () => {
  it.runIf(onPostgres)(
    "a cancel through one stops the run on the other, whose stream ends CANCELLED",
    async () => {
      const store = await freshStore("exec", { migrated: true });
      let a: MainProcess | undefined;
      let b: MainProcess | undefined;
      try {
        // Default ORPHAN_AFTER_MS: heartbeats every 15 s, so a prompt stop can only come from the cancel bus.
        [a, b] = await Promise.all([startProcess(store, "instance-a"), startProcess(store, "instance-b")]);
        const onA = await clientsOf(a);
        const onB = await clientsOf(b);
        const created = await agent("two-process", { endpoint: `${fake.url}/slow-forever` }, {}, onA.agents);

        const events: ExecutionEvent[] = [];
        let cancelled: Execution | undefined;
        for await (const res of onA.executions.streamExecuteAgent(
          { input: { agentId: created.id, prompt: "go" } },
          { signal: AbortSignal.timeout(15_000) },
        )) {
          events.push(res.event!);
          if (!cancelled && outputsOf(events).length >= 2) {
            cancelled = (await onB.executions.cancelExecution({ executionId: events[0]!.executionId })).execution!;
            expect(cancelled.status).toBe(ExecutionStatus.CANCELLED);
          }
        }
        const id = events[0]!.executionId;
        expect(completedOf(events)?.status).toBe(ExecutionStatus.CANCELLED);
        await within(requestsFor(created.id)[0]!.aborted, 3000, "the webhook sees A's request aborted");
        const { execution } = await onA.executions.getExecution({ executionId: id });
        expect(execution?.status).toBe(ExecutionStatus.CANCELLED);
      } finally {
        await Promise.all([a?.stop(), b?.stop()]);
        await store.drop();
      }
    },
    120_000,
  );

  it.runIf(onPostgres)(
    "WatchExecution through one instance ends with the completed event of a run that stops late on the other",
    async () => {
      const store = await freshStore("exec", { migrated: true });
      let a: MainProcess | undefined;
      let b: MainProcess | undefined;
      try {
        // Heartbeats every 2 s: without the cancel bus, A notices a cancel within about 2 s.
        const env = { ORPHAN_AFTER_MS: "8000" };
        [a, b] = await Promise.all([startProcess(store, "late-a", env), startProcess(store, "late-b", env)]);
        const onA = await clientsOf(a);
        const onB = await clientsOf(b);
        // A webhook that never answers: after "started", the run produces no event until it ends.
        const created = await agent("late-stop", { endpoint: `${fake.url}/hang` }, {}, onA.agents);
        const onAStream = drain(
          onA.executions.streamExecuteAgent({ input: { agentId: created.id, prompt: "go" } }, { signal: AbortSignal.timeout(15_000) }),
        );
        await eventually(() => (onAStream.events.length && requestsFor(created.id).length ? true : undefined), 10_000, "the run on A");
        const id = onAStream.events[0]!.executionId;

        // The LISTEN connections drop (a network blip, a database failover):
        // the cancel is now noticed by A's heartbeat, a moment after the row says CANCELLED.
        const client = new pg.Client({ connectionString: store.env.DATABASE_URL });
        await client.connect();
        try {
          const { rows } = await client.query(
            "select pg_terminate_backend(pid) as gone from pg_stat_activity where datname = current_database() and query ilike 'listen %'",
          );
          expect(rows.length).toBe(2);
        } finally {
          await client.end();
        }
        // Past the runner's 250 ms event flush, so "started" is stored.
        await sleep(400);

        const { execution: cancelled } = await onB.executions.cancelExecution({ executionId: id });
        expect(cancelled?.status).toBe(ExecutionStatus.CANCELLED);
        const watched = drain(onB.executions.watchExecution({ executionId: id, afterSequence: 0n }, { signal: AbortSignal.timeout(15_000) }));

        // A stops the run (heartbeat) and its own stream ends CANCELLED with every event.
        expect(await within(onAStream.done, 10_000, "A's stream ends")).toBeUndefined();
        expect(completedOf(onAStream.events)?.status).toBe(ExecutionStatus.CANCELLED);
        await within(requestsFor(created.id)[0]!.aborted, 3000, "the webhook sees A's request aborted");

        // B's watcher must see the same: every event, ending with completed.
        expect(await within(watched.done, 10_000, "B's watch ends")).toBeUndefined();
        expect(watched.events.map((e) => e.event.case).at(-1)).toBe("completed");
        expect(completedOf(watched.events)?.status).toBe(ExecutionStatus.CANCELLED);
        expect(watched.events.map((e) => e.sequence)).toEqual(onAStream.events.map((e) => e.sequence));
      } finally {
        await Promise.all([a?.stop(), b?.stop()]);
        await store.drop();
      }
    },
    120_000,
  );
});

describe("after SIGKILL mid-run (restart with the same INSTANCE_ID and data)", () => {
  let store: Store | undefined;
  let first: MainProcess | undefined;
  let second: MainProcess | undefined;
  let after: Awaited<ReturnType<typeof clientsOf>>;
  let executionId: string;
  let agentId: string;
  const endpoint = () => `${fake.url}/hang`;

  beforeAll(async () => {
    store = await freshStore("exec", { migrated: true });
    first = await startProcess(store, "crash-instance");
    const before = await clientsOf(first);
    const created = await agent("crash", { endpoint: endpoint(), timeout_ms: 600_000 }, {}, before.agents);
    agentId = created.id;
    const call = new AbortController();
    const running = before.executions
      .executeAgent({ input: { agentId, prompt: "never answered" } }, { signal: call.signal })
      .catch((err: unknown) => err);
    const rec = await eventually(() => requestsFor(agentId)[0], 10_000, "the run reaches the webhook");
    executionId = String(rec.json?.execution_id);
    const { execution } = await before.executions.getExecution({ executionId });
    if (execution?.status !== ExecutionStatus.RUNNING) throw new Error(`expected RUNNING before the kill, got ${execution?.status}`);
    // Past the runner's 250 ms event flush, so the started event is stored.
    await sleep(600);

    first.child.kill("SIGKILL");
    await within(first.exited, 5000, "exit after SIGKILL");
    call.abort();
    await within(running, 5000, "the call ends with its server");

    second = await startProcess(store, "crash-instance");
    after = await clientsOf(second);
  }, 120_000);

  afterAll(async () => {
    if (first && first.child.exitCode === null && first.child.signalCode === null) first.child.kill("SIGKILL");
    await second?.stop();
    await store?.drop();
  }, 60_000);

  it("closes the run as FAILED with UNAVAILABLE and a clear message", async () => {
    const { execution } = await after.executions.getExecution({ executionId });
    expect(execution?.status).toBe(ExecutionStatus.FAILED);
    expect(execution?.error?.code).toBe("UNAVAILABLE");
    expect(execution?.error?.message).toMatch(/stopped before it finished/);
    expect(execution?.endTime).toBeDefined();
  });

  it("keeps the data committed before the kill", async () => {
    const { agent: kept } = await after.agents.getAgent({ agentId });
    expect(kept?.name).toBe("crash");
    expect(kept?.config).toEqual({ endpoint: endpoint(), timeout_ms: 600_000 });
    const { executions: listed } = await after.executions.listExecutions({ agentId });
    expect(listed.map((e) => e.id)).toEqual([executionId]);
  });

  it("WatchExecution of the closed run replays its events and ends with a completed FAILED event", async () => {
    const events: ExecutionEvent[] = [];
    for await (const res of after.executions.watchExecution({ executionId, afterSequence: 0n }, { signal: AbortSignal.timeout(10_000) })) {
      events.push(res.event!);
    }
    expect(events[0]?.event.case).toBe("started");
    // The contract: "completed — the run reached a terminal status; the stream ends after it".
    expect(events.map((e) => e.event.case).at(-1)).toBe("completed");
    expect(completedOf(events)?.status).toBe(ExecutionStatus.FAILED);
  });
});
