import { randomUUID } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { ExecutionStatus, type ExecutionEvent } from "../../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { eventually } from "../support/faults.ts";
import { exitWithin, freshStore, startMain, stopAll, type MainProcess, type Store } from "../support/main-process.ts";

/*
 * The real process under signals. SIGTERM with unary calls and streams in
 * flight: health turns NOT_SERVING first, new calls are refused with
 * UNAVAILABLE, the calls in flight finish, streams end cleanly, the exit
 * code is 0 and nothing is left half-written. SIGKILL under a stream of
 * writes: after a restart every acknowledged write is there, and retrying
 * the unanswered ones with their request_id creates each exactly once.
 * (A run orphaned by SIGKILL is closed as FAILED: test/executions/control.test.ts.)
 */

const SECRET = "reliability-signals-secret-0123456789abcdef";
const GRACE_MS = 8000;
const TENANT = "signals";

let upstream: http.Server;
let upstreamUrl: string;
/** Requests the webhook fake has received, by path. */
const received: string[] = [];

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    received.push(req.url ?? "");
    req.resume();
    req.on("end", () => {
      if (req.url === "/slow-json") {
        setTimeout(() => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ output: "done" })), 1500);
      } else if (req.url === "/slow-stream") {
        res.writeHead(200, { "content-type": "text/event-stream" });
        let i = 0;
        const tick = setInterval(() => {
          if (i < 8) res.write(`data: ${JSON.stringify({ output: `w${i++} ` })}\n\n`);
          else {
            clearInterval(tick);
            res.end(`data: ${JSON.stringify({ usage: { input_tokens: 1, output_tokens: 8 } })}\n\n`);
          }
        }, 150);
      } else {
        res.writeHead(404).end();
      }
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await stopAll();
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

const token = () => mintToken(new TextEncoder().encode(SECRET), { tenants: [TENANT], roles: ["admin"], subject: "signals", ttl: "10m" });
const env = (store: Store) => ({ ...store.env, JWT_SECRET: SECRET, SHUTDOWN_GRACE_MS: String(GRACE_MS), INSTANCE_ID: "signals-1" });

describe("the server process under signals (one database: each test starts from what the last left)", () => {
  let store: Store;
  // The process the next test starts from, when the last one left one running.
  let current: MainProcess | undefined;

  beforeAll(async () => {
    store = await freshStore("signals");
  });
  afterAll(async () => {
    await stopAll();
    await store?.drop();
  }, 60_000);

  it("SIGTERM with unary calls and streams in flight: turns NOT_SERVING first, refuses new calls, lets the calls in flight finish, ends streams cleanly, exits 0", { timeout: 120_000 }, async () => {
    const proc = await startMain(env(store));
    const transport = connectJson(proc.url, await token());
    const agents = clientOf(AgentService, transport);
    const executions = clientOf(ExecutionService, transport);
    const json = (await agents.createAgent({ agent: { name: "slow-json", role: "r", agentType: AgentType.WEBHOOK, config: { endpoint: `${upstreamUrl}/slow-json` } } })).agent!;
    const sse = (await agents.createAgent({ agent: { name: "slow-stream", role: "r", agentType: AgentType.WEBHOOK, config: { endpoint: `${upstreamUrl}/slow-stream` } } })).agent!;

    const at: Record<string, number> = {};
    const seen: Status[] = [];
    const watch = (async () => {
      for await (const res of clientOf(Health, connectJson(proc.url)).watch({ service: "" }, { timeoutMs: 60_000 })) {
        seen.push(res.status);
        if (res.status === Status.NOT_SERVING) at.notServing ??= Date.now();
      }
      at.watchEnded = Date.now();
    })();
    const unary = [1, 2].map((i) =>
      executions.executeAgent({ input: { agentId: json.id, prompt: `unary ${i}` } }, { timeoutMs: 20_000 }).then((r) => {
        at[`unary${i}`] = Date.now();
        return r.execution!;
      }),
    );
    const events: ExecutionEvent[] = [];
    const stream = (async () => {
      for await (const res of executions.streamExecuteAgent({ input: { agentId: sse.id, prompt: "stream" } }, { timeoutMs: 20_000 })) {
        events.push(res.event!);
      }
      at.streamEnded = Date.now();
    })();
    const requests = () => received.filter((p) => p === "/slow-json" || p === "/slow-stream").length;
    await eventually(() => (requests() === 3 && seen.length > 0 ? true : undefined), 10_000, "all three runs reach the webhook");

    at.sigterm = Date.now();
    proc.child.kill("SIGTERM");
    // A new call now, on a new connection: refused.
    await eventually(() => (at.notServing ? true : undefined), 2000, "health says NOT_SERVING");
    const refused = await errorOf(clientOf(ToolService, connectJson(proc.url, await token())).createTool({ tool: { name: "too-late", description: "d" } }));
    expect(refused.code).toBe(Code.Unavailable);

    const finished = await Promise.all(unary);
    expect(finished.map((e) => [e.status, e.response])).toEqual([
      [ExecutionStatus.SUCCEEDED, "done"],
      [ExecutionStatus.SUCCEEDED, "done"],
    ]);
    await stream; // ends without an error
    expect(events.at(-1)?.event.case).toBe("completed");
    expect(events.at(-1)?.event.value).toMatchObject({ status: ExecutionStatus.SUCCEEDED });
    await watch; // ends without an error
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
    // Health flipped before any call in flight finished.
    expect(at.notServing).toBeLessThan(Math.min(at.unary1!, at.unary2!, at.streamEnded!));
    expect(await exitWithin(proc, GRACE_MS)).toBe(0);

    // Nothing half-written: after a restart every execution is finished, with its result.
    const again = await startMain(env(store));
    const after = clientOf(ExecutionService, connectJson(again.url, await token()));
    const { executions: all } = await after.listExecutions({ pageSize: 50 });
    expect(all.map((e) => e.status).sort()).toEqual(Array(3).fill(ExecutionStatus.SUCCEEDED));
    expect((await clientOf(ToolService, connectJson(again.url, await token())).listTools({})).tools).toEqual([]);
    current = again;
  });

  it("SIGKILL under a stream of writes: loses no acknowledged write, and retried unanswered creates land exactly once", { timeout: 120_000 }, async () => {
    const first = current ?? (await startMain(env(store)));
    const tools = clientOf(ToolService, connectJson(first.url, await token()));
    const creates = new Map<string, { requestId: string; id?: string }>();
    let killed = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; !killed; i++) {
        const name = `w${w}-${i}`;
        const requestId = randomUUID();
        creates.set(name, { requestId });
        try {
          const { tool } = await tools.createTool({ tool: { name, description: "d" }, requestId }, { timeoutMs: 5000 });
          creates.get(name)!.id = tool!.id;
        } catch {
          // unanswered: the server died with it
        }
      }
    });
    await eventually(() => ([...creates.values()].filter((c) => c.id).length >= 30 ? true : undefined), 20_000, "30 writes acknowledged");
    first.child.kill("SIGKILL");
    killed = true;
    expect(await exitWithin(first, 5000)).toBeNull();
    await Promise.all(writers);

    const second = await startMain(env(store));
    const after = clientOf(ToolService, connectJson(second.url, await token()));
    const listed = new Map<string, string>();
    for (let pageToken = ""; ; ) {
      const page = await after.listTools({ pageSize: 200, pageToken });
      for (const t of page.tools) listed.set(t.name, t.id);
      if (!(pageToken = page.nextPageToken)) break;
    }
    for (const [name, create] of creates) {
      if (create.id) expect(listed.get(name), `acknowledged ${name}`).toBe(create.id);
      // Retried: the one tool the first call made (if it committed), or a new one; never two.
      const { tool } = await after.createTool({ tool: { name, description: "d" }, requestId: create.requestId });
      if (listed.has(name)) expect(tool?.id).toBe(listed.get(name));
    }
    const total = (await after.listTools({ pageSize: 200 })).tools.length;
    expect(total).toBe(Math.min(200, creates.size));
    second.child.kill("SIGTERM");
    expect(await exitWithin(second, GRACE_MS)).toBe(0);
  });
});
