import { createHmac, timingSafeEqual } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType, type CredentialSecretSchema } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ExecutionStatus, type Execution, type ExecutionEvent } from "../../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import { clientOf, connectJson } from "../support/clients.ts";
import { upstream, type Received, type Route, type Upstream } from "../support/upstream.ts";
import { sleep, within } from "../support/wait.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * ExecutionService against real agent endpoints: local HTTP servers on
 * 127.0.0.1 that play an OpenAI-compatible model server and webhook agents
 * (no mocked fetch). A failing endpoint is recorded on the execution; the
 * RPC itself succeeds with it.
 */

const TENANT = "exec-adapters";
const PRICES = { "fake-model": { input: 1.5, output: 2 } };

let s: TestServer;
let agents: ReturnType<typeof clientOf<typeof AgentService>>;
let tools: ReturnType<typeof clientOf<typeof ToolService>>;
let creds: ReturnType<typeof clientOf<typeof CredentialService>>;
let executions: ReturnType<typeof clientOf<typeof ExecutionService>>;
let adminExecutions: ReturnType<typeof clientOf<typeof ExecutionService>>;

// ---------------------------------------------------------------- fakes --


/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function sse(res: http.ServerResponse, data: unknown): void {
  res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
}

/** The HMAC the platform signs a webhook body with: v1=hex(hmac_sha256(secret, "<timestamp>.<body>")). */
function signatureValid(rec: Received, secret: string): boolean {
  const timestamp = String(rec.headers["x-agentplatform-timestamp"] ?? "");
  const given = String(rec.headers["x-agentplatform-signature"] ?? "");
  if (!/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const expected = `v1=${createHmac("sha256", secret).update(`${timestamp}.${rec.body}`).digest("hex")}`;
  return given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
}

// -------------------------------------------------------------- helpers --

async function credential(name: string, type: CredentialType, secret: MessageInitShape<typeof CredentialSecretSchema>["value"]): Promise<string> {
  const { credential } = await creds.createCredential({ credential: { name, type }, secret: { value: secret } });
  return credential!.id;
}

async function agent(fields: {
  name: string;
  type?: AgentType;
  config?: JsonObject;
  systemPrompt?: string;
  credentialIds?: string[];
  toolIds?: string[];
}) {
  const { agent } = await agents.createAgent({
    agent: {
      name: fields.name,
      role: "test",
      agentType: fields.type ?? AgentType.WEBHOOK,
      config: fields.config ?? {},
      systemPrompt: fields.systemPrompt ?? "",
      credentialIds: fields.credentialIds ?? [],
      toolIds: fields.toolIds ?? [],
    },
  });
  return agent!;
}

type Input = MessageInitShape<typeof ExecutionService.method.executeAgent.input>["input"];

async function execute(input: Input, client = executions): Promise<Execution> {
  const { execution } = await client.executeAgent({ input });
  return execution!;
}

/** Every event of a StreamExecuteAgent call, bounded in time. */
async function streamAll(input: Input, timeoutMs = 10_000): Promise<ExecutionEvent[]> {
  const events: ExecutionEvent[] = [];
  for await (const res of executions.streamExecuteAgent({ input }, { signal: AbortSignal.timeout(timeoutMs) })) {
    events.push(res.event!);
  }
  return events;
}

const kinds = (events: ExecutionEvent[]) => events.map((e) => e.event.case);
const outputsOf = (events: ExecutionEvent[]) =>
  events.flatMap((e) => (e.event.case === "output" ? [e.event.value.text] : []));

let fake: Upstream;

beforeAll(async () => {
  s = await startTestServer({ MODEL_PRICES: JSON.stringify(PRICES) });
  const editor = connectJson(s.url, await s.token(TENANT, ["editor"]));
  const admin = connectJson(s.url, await s.token(TENANT, ["admin"]));
  agents = clientOf(AgentService, editor);
  tools = clientOf(ToolService, editor);
  executions = clientOf(ExecutionService, editor);
  creds = clientOf(CredentialService, admin);
  adminExecutions = clientOf(ExecutionService, admin);
  fake = await upstream();
});
afterAll(async () => {
  await fake?.close();
  await s?.close();
});

// --------------------------------------------------------------- OpenAI --

describe("OPENAI_COMPATIBLE agents", () => {
  const searchSchema = { type: "object", properties: { q: { type: "string" } }, required: ["q"] };
  const USAGE = { prompt_tokens: 13, completion_tokens: 7 };

  /** A chat-completions stream: content deltas, one tool call in two pieces, a usage chunk, [DONE]. */
  async function chatStream(_rec: Received, res: http.ServerResponse): Promise<void> {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const chunk = (delta: Record<string, unknown>) => ({
      id: "chatcmpl-1",
      object: "chat.completion.chunk",
      model: "fake-model",
      choices: [{ index: 0, delta, finish_reason: null }],
    });
    await sleep(20);
    sse(res, chunk({ role: "assistant", content: "Hel" }));
    await sleep(10);
    sse(res, chunk({ content: "lo, " }));
    await sleep(10);
    sse(res, chunk({ tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "search", arguments: '{"q":' } }] }));
    sse(res, chunk({ tool_calls: [{ index: 0, function: { arguments: '"weather"}' } }] }));
    await sleep(10);
    sse(res, chunk({ content: "world" }));
    sse(res, { id: "chatcmpl-1", object: "chat.completion.chunk", model: "fake-model", choices: [], usage: USAGE });
    sse(res, "[DONE]");
    res.end();
  }

  let toolId: string;
  beforeAll(async () => {
    const { tool } = await tools.createTool({ tool: { name: "search", description: "Searches the web", parameters: searchSchema } });
    toolId = tool!.id;
    fake.route("/v1/chat/completions", chatStream);
    fake.route("/apikey/v1/chat/completions", chatStream);
  });

  async function openAiAgent(name: string, credentialId: string, path = "/v1") {
    return agent({
      name,
      type: AgentType.OPENAI_COMPATIBLE,
      config: { base_url: `${fake.url}${path}`, model: "fake-model" },
      systemPrompt: "You are terse.",
      credentialIds: [credentialId],
      toolIds: [toolId],
    });
  }

  it("sends model, system and user messages, stream, the agent's tools and the bearer token", async () => {
    const bearer = await credential("openai-bearer", CredentialType.BEARER_TOKEN, {
      case: "bearerToken",
      value: { token: "sk-bearer-123" },
    });
    const a = await openAiAgent("openai-request", bearer);
    const before = fake.requests.length;
    const execution = await execute({ agentId: a.id, prompt: "What is the weather?" });
    expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);

    const calls = fake.requests.slice(before).filter((r) => r.path === "/v1/chat/completions");
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.method).toBe("POST");
    expect(call.headers.authorization).toBe("Bearer sk-bearer-123");
    expect(call.json).toMatchObject({
      model: "fake-model",
      stream: true,
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "What is the weather?" },
      ],
      tools: [{ type: "function", function: { name: "search", description: "Searches the web", parameters: searchSchema } }],
    });
  });

  it("sends an API_KEY credential raw in the header it names (x-api-key by default)", async () => {
    const named = await credential("openai-apikey-authz", CredentialType.API_KEY, {
      case: "apiKey",
      value: { apiKey: "Bearer sk-apikey-456", headerName: "authorization" },
    });
    const plain = await credential("openai-apikey-default", CredentialType.API_KEY, {
      case: "apiKey",
      value: { apiKey: "sk-apikey-789", headerName: "" },
    });
    const before = fake.requests.length;
    expect((await execute({ agentId: (await openAiAgent("openai-apikey-1", named, "/apikey/v1")).id, prompt: "p" })).status).toBe(
      ExecutionStatus.SUCCEEDED,
    );
    expect((await execute({ agentId: (await openAiAgent("openai-apikey-2", plain, "/apikey/v1")).id, prompt: "p" })).status).toBe(
      ExecutionStatus.SUCCEEDED,
    );
    const [first, second] = fake.requests.slice(before);
    expect(first?.headers.authorization).toBe("Bearer sk-apikey-456");
    expect(second?.headers["x-api-key"]).toBe("sk-apikey-789");
    expect(second?.headers.authorization).toBeUndefined();
  });

  it("ExecuteAgent returns the concatenated response, token usage, priced cost and timings", async () => {
    const bearer = await credential("openai-usage", CredentialType.BEARER_TOKEN, { case: "bearerToken", value: { token: "t" } });
    const a = await openAiAgent("openai-usage", bearer);
    const execution = await execute({ agentId: a.id, prompt: "hi" });
    expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(execution.response).toBe("Hello, world");
    expect(execution.model).toBe("fake-model");
    expect(execution.testModel).toBe(false);
    expect(execution.agentVersion).toBe(1);
    expect(execution.usage?.inputTokens).toBe(13n);
    expect(execution.usage?.outputTokens).toBe(7n);
    // 13 × 1.5 + 7 × 2 = 33.5 micro-USD, rounded.
    expect(execution.usage?.costMicrosUsd).toBe(BigInt(Math.round(13 * 1.5 + 7 * 2)));
    expect(execution.usage?.costMicrosUsd).toBe(34n);
    expect(execution.timeToFirstOutputMs).toBeGreaterThan(0n);
    expect(execution.latencyMs).toBeGreaterThanOrEqual(execution.timeToFirstOutputMs);
    expect(execution.error).toBeUndefined();
    expect(execution.startTime).toBeDefined();
    expect(execution.endTime).toBeDefined();
    // The stored record says the same.
    const { execution: stored } = await executions.getExecution({ executionId: execution.id });
    expect(stored?.response).toBe("Hello, world");
    expect(stored?.usage).toEqual(execution.usage);
  });

  it("StreamExecuteAgent yields started, ordered output chunks, the tool call, usage and completed", async () => {
    const bearer = await credential("openai-stream", CredentialType.BEARER_TOKEN, { case: "bearerToken", value: { token: "t" } });
    const a = await openAiAgent("openai-stream", bearer);
    const events = await streamAll({ agentId: a.id, prompt: "hi" });

    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => BigInt(i + 1)));
    const id = events[0]!.executionId;
    expect(events.every((e) => e.executionId === id)).toBe(true);
    expect(events.every((e) => e.time !== undefined)).toBe(true);

    expect(kinds(events)[0]).toBe("started");
    expect(kinds(events).at(-1)).toBe("completed");
    expect(outputsOf(events)).toEqual(["Hel", "lo, ", "world"]);
    const toolCalls = events.flatMap((e) => (e.event.case === "toolCall" ? [e.event.value] : []));
    expect(toolCalls).toHaveLength(1);
    expect(toolCalls[0]).toMatchObject({ name: "search", callId: "call_1" });
    expect(JSON.parse(toolCalls[0]!.argumentsJson)).toEqual({ q: "weather" });
    const usage = events.flatMap((e) => (e.event.case === "usage" ? [e.event.value] : []));
    expect(usage.at(-1)).toMatchObject({ inputTokens: 13n, outputTokens: 7n });

    const started = events[0]!.event;
    expect(started.case === "started" && started.value.execution?.status).toBe(ExecutionStatus.RUNNING);
    const completed = events.at(-1)!.event;
    expect(completed.case).toBe("completed");
    if (completed.case === "completed") {
      expect(completed.value.id).toBe(id);
      expect(completed.value.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(completed.value.response).toBe("Hello, world");
      expect(completed.value.usage?.costMicrosUsd).toBe(34n);
    }
  });
});

// -------------------------------------------------------------- webhook --

describe("webhook agents", () => {
  const SECRET = "whsec-correct-horse";
  let secretId: string;
  let otherSecretId: string;
  let toolId: string;

  /** A receiver that rejects a bad signature with 401, then answers with `answer`. */
  function signed(answer: Route): Route {
    return (rec, res) => {
      if (!signatureValid(rec, SECRET)) {
        res.writeHead(401, { "content-type": "text/plain" }).end("bad signature");
        return;
      }
      return answer(rec, res);
    };
  }

  beforeAll(async () => {
    secretId = await credential("wh-secret", CredentialType.WEBHOOK_SECRET, { case: "webhookSecret", value: { secret: SECRET } });
    otherSecretId = await credential("wh-secret-other", CredentialType.WEBHOOK_SECRET, {
      case: "webhookSecret",
      value: { secret: "not-the-receivers-secret" },
    });
    const { tool } = await tools.createTool({
      tool: { name: "lookup", description: "Looks things up", parameters: { type: "object", properties: { id: { type: "string" } } } },
    });
    toolId = tool!.id;

    fake.route(
      "/wh/json",
      signed((_rec, res) => {
        res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
        res.end(JSON.stringify({ output: "json answer", usage: { input_tokens: 5, output_tokens: 3 } }));
      }),
    );
    fake.route(
      "/wh/sse",
      signed(async (_rec, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        for (const output of ["sse ", "answer"]) {
          sse(res, { output });
          await sleep(5);
        }
        sse(res, { tool_call: { name: "lookup", arguments: { id: "42" }, id: "c-1" } });
        sse(res, { usage: { input_tokens: 4, output_tokens: 2 } });
        res.end();
      }),
    );
    fake.route(
      "/wh/ndjson",
      signed(async (_rec, res) => {
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        res.write(JSON.stringify({ output: "nd" }) + "\n");
        await sleep(5);
        res.write(JSON.stringify({ output: "json" }) + "\n");
        res.end(JSON.stringify({ usage: { input_tokens: 2, output_tokens: 1 } }) + "\n");
      }),
    );
    fake.route(
      "/wh/text",
      signed((_rec, res) => {
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        res.end("plain answer");
      }),
    );
    fake.route("/wh/basic", (rec, res) => {
      const expected = `Basic ${Buffer.from("agent-user:agent-pass").toString("base64")}`;
      if (rec.headers.authorization !== expected) {
        res.writeHead(401, { "content-type": "text/plain" }).end("bad basic auth");
        return;
      }
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ output: "basic ok" }));
    });
  });

  it("POSTs the signed envelope with the execution, agent, prompt, input and tools", async () => {
    const a = await agent({
      name: "wh-envelope",
      config: { endpoint: `${fake.url}/wh/json` },
      systemPrompt: "be webhooky",
      credentialIds: [secretId],
      toolIds: [toolId],
    });
    const before = fake.requests.length;
    const execution = await execute({ agentId: a.id, prompt: "envelope please", input: { ticket: 7, tags: ["a"] }, sessionId: "sess-1" });
    expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);

    const [rec] = fake.requests.slice(before);
    expect(rec?.method).toBe("POST");
    expect(rec?.headers["content-type"]).toMatch(/^application\/json/);
    expect(signatureValid(rec!, SECRET)).toBe(true);
    expect(rec?.headers["x-agentplatform-signature"]).toMatch(/^v1=[0-9a-f]{64}$/);
    expect(rec?.headers["x-agentplatform-execution-id"]).toBe(execution.id);
    expect(rec?.json).toMatchObject({
      type: "agentplatform.execution.v1",
      execution_id: execution.id,
      agent: { id: a.id, name: "wh-envelope", type: "WEBHOOK", version: 1 },
      system_prompt: "be webhooky",
      prompt: "envelope please",
      input: { ticket: 7, tags: ["a"] },
      session_id: "sess-1",
      tools: [{ name: "lookup", description: "Looks things up", parameters: { type: "object", properties: { id: { type: "string" } } } }],
    });
    // No secret travels in the envelope.
    expect(rec?.body).not.toContain(SECRET);
  });

  it("reads an application/json answer with output and usage", async () => {
    const a = await agent({ name: "wh-json", config: { endpoint: `${fake.url}/wh/json` }, credentialIds: [secretId] });
    const execution = await execute({ agentId: a.id, prompt: "p" });
    expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(execution.response).toBe("json answer");
    expect(execution.usage).toMatchObject({ inputTokens: 5n, outputTokens: 3n });
  });

  it("reads a text/event-stream answer of output events, streaming them as they come", async () => {
    const a = await agent({ name: "wh-sse", config: { endpoint: `${fake.url}/wh/sse` }, credentialIds: [secretId] });
    const events = await streamAll({ agentId: a.id, prompt: "p" });
    expect(outputsOf(events)).toEqual(["sse ", "answer"]);
    const call = events.find((e) => e.event.case === "toolCall")?.event;
    expect(call?.case === "toolCall" && call.value).toMatchObject({ name: "lookup", callId: "c-1" });
    expect(call?.case === "toolCall" && JSON.parse(call.value.argumentsJson)).toEqual({ id: "42" });
    const completed = events.at(-1)!.event;
    expect(completed.case === "completed" && completed.value.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(completed.case === "completed" && completed.value.response).toBe("sse answer");
    expect(completed.case === "completed" && completed.value.usage).toMatchObject({ inputTokens: 4n, outputTokens: 2n });
  });

  it("reads an application/x-ndjson answer line by line", async () => {
    const a = await agent({ name: "wh-ndjson", config: { endpoint: `${fake.url}/wh/ndjson` }, credentialIds: [secretId] });
    const execution = await execute({ agentId: a.id, prompt: "p" });
    expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(execution.response).toBe("ndjson");
    expect(execution.usage).toMatchObject({ inputTokens: 2n, outputTokens: 1n });
  });

  it("takes a text/plain answer as the response", async () => {
    const a = await agent({ name: "wh-text", config: { endpoint: `${fake.url}/wh/text` }, credentialIds: [secretId] });
    const execution = await execute({ agentId: a.id, prompt: "p" });
    expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(execution.response).toBe("plain answer");
  });

  it("fails with PERMISSION_DENIED when the agent's secret is not the receiver's", async () => {
    const a = await agent({ name: "wh-wrong-secret", config: { endpoint: `${fake.url}/wh/json` }, credentialIds: [otherSecretId] });
    const execution = await execute({ agentId: a.id, prompt: "p" });
    expect(execution.status).toBe(ExecutionStatus.FAILED);
    expect(execution.error?.code).toBe("PERMISSION_DENIED");
    expect(execution.error?.message).toContain("401");
    expect(execution.response).toBe("");
  });

  it("applies a BASIC_AUTH credential as authorization: Basic", async () => {
    const basic = await credential("wh-basic", CredentialType.BASIC_AUTH, {
      case: "basicAuth",
      value: { username: "agent-user", password: "agent-pass" },
    });
    const a = await agent({ name: "wh-basic", config: { endpoint: `${fake.url}/wh/basic` }, credentialIds: [basic] });
    const execution = await execute({ agentId: a.id, prompt: "p" });
    expect(execution.error).toBeUndefined();
    expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(execution.response).toBe("basic ok");
  });
});

// ------------------------------------------------------------- failures --

describe("endpoint failures are recorded on the execution", () => {
  beforeAll(() => {
    fake.route("/fail/500", (_rec, res) => {
      res.writeHead(500, { "content-type": "text/plain" }).end("upstream exploded: trace-7f3a");
    });
    fake.route("/fail/malformed", (_rec, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end('{"output": "unterminated');
    });
  });

  it("records HTTP 500 as FAILED with UNAVAILABLE, the upstream body visible to admins only", async () => {
    const a = await agent({ name: "fail-500", config: { endpoint: `${fake.url}/fail/500` } });
    const execution = await execute({ agentId: a.id, prompt: "p" });
    expect(execution.status).toBe(ExecutionStatus.FAILED);
    expect(execution.error?.code).toBe("UNAVAILABLE");
    expect(execution.error?.message).toContain("500");
    expect(execution.error?.detail).toBe("");
    expect(execution.endTime).toBeDefined();

    const { execution: asAdmin } = await adminExecutions.getExecution({ executionId: execution.id });
    expect(asAdmin?.error?.detail).toContain("upstream exploded: trace-7f3a");
    const { execution: asEditor } = await executions.getExecution({ executionId: execution.id });
    expect(asEditor?.error?.code).toBe("UNAVAILABLE");
    expect(asEditor?.error?.detail).toBe("");
  });

  it("records a malformed JSON answer as FAILED", async () => {
    const a = await agent({ name: "fail-malformed", config: { endpoint: `${fake.url}/fail/malformed` } });
    const execution = await execute({ agentId: a.id, prompt: "p" });
    expect(execution.status).toBe(ExecutionStatus.FAILED);
    expect(execution.error?.code).not.toBe("");
    expect(execution.error?.message).toMatch(/JSON/);
    const { execution: asAdmin } = await adminExecutions.getExecution({ executionId: execution.id });
    expect(asAdmin?.error?.detail).toContain("unterminated");
  });

  it("records an endpoint that refuses connections as FAILED with UNAVAILABLE", async () => {
    const port = await closedPort();
    const a = await agent({ name: "fail-refused", config: { endpoint: `http://127.0.0.1:${port}/hook` } });
    const execution = await execute({ agentId: a.id, prompt: "p" });
    expect(execution.status).toBe(ExecutionStatus.FAILED);
    expect(execution.error?.code).toBe("UNAVAILABLE");
  });

  it("records a config without an endpoint as FAILED with FAILED_PRECONDITION", async () => {
    const webhook = await agent({ name: "fail-no-endpoint", config: {} });
    const execution = await execute({ agentId: webhook.id, prompt: "p" });
    expect(execution.status).toBe(ExecutionStatus.FAILED);
    expect(execution.error?.code).toBe("FAILED_PRECONDITION");
    expect(execution.error?.message).toContain("endpoint");

    const openai = await agent({ name: "fail-no-base-url", type: AgentType.OPENAI_COMPATIBLE, config: { model: "fake-model" } });
    const chat = await execute({ agentId: openai.id, prompt: "p" });
    expect(chat.status).toBe(ExecutionStatus.FAILED);
    expect(chat.error?.code).toBe("FAILED_PRECONDITION");
    expect(chat.error?.message).toContain("base_url");
  });
});

// -------------------------------------------------------------- timeouts --

describe("timeouts", () => {
  beforeAll(() => {
    // Never answers; the connection stays open until the caller gives up.
    fake.route("/hang", () => {});
  });

  it("ends a run past its config timeout_ms as TIMED_OUT and aborts the outbound call", async () => {
    const a = await agent({ name: "timeout-config", config: { endpoint: `${fake.url}/hang`, timeout_ms: 300 } });
    const before = fake.requests.length;
    const t0 = Date.now();
    const execution = await execute({ agentId: a.id, prompt: "p" });
    const elapsed = Date.now() - t0;
    expect(execution.status).toBe(ExecutionStatus.TIMED_OUT);
    expect(execution.error?.code).toBe("DEADLINE_EXCEEDED");
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1500);
    expect(execution.latencyMs).toBeGreaterThanOrEqual(290n);

    const rec = fake.requests.slice(before).find((r) => r.path === "/hang");
    expect(rec).toBeDefined();
    await within(rec!.aborted, 2000, "the webhook sees its request aborted");
    expect(rec!.wasAborted).toBe(true);
  });

  it("caps the run at the RPC deadline: the execution ends TIMED_OUT, not RUNNING", async () => {
    const a = await agent({ name: "timeout-deadline", config: { endpoint: `${fake.url}/hang` } });
    const before = fake.requests.length;
    const t0 = Date.now();
    // The call answers with the TIMED_OUT execution just before its deadline,
    // or fails with DEADLINE_EXCEEDED; either way the execution must be closed.
    const outcome = await executions
      .executeAgent({ input: { agentId: a.id, prompt: "p" } }, { timeoutMs: 800 })
      .then((r) => r.execution, (err: unknown) => err);
    expect(Date.now() - t0).toBeLessThan(2000);
    if (outcome && typeof outcome === "object" && "status" in outcome) {
      expect((outcome as Execution).status).toBe(ExecutionStatus.TIMED_OUT);
    }

    const { executions: listed } = await executions.listExecutions({ agentId: a.id });
    expect(listed).toHaveLength(1);
    // The run may still be writing its end when a failed call returns.
    let stored = listed[0]!;
    for (const deadline = Date.now() + 2000; stored.status === ExecutionStatus.RUNNING && Date.now() < deadline; ) {
      await sleep(50);
      stored = (await executions.getExecution({ executionId: stored.id })).execution!;
    }
    expect(stored.status).toBe(ExecutionStatus.TIMED_OUT);
    expect(stored.error?.code).toBe("DEADLINE_EXCEEDED");
    expect(stored.latencyMs).toBeLessThan(800n);

    const rec = fake.requests.slice(before).find((r) => r.path === "/hang");
    await within(rec!.aborted, 2000, "the webhook sees its request aborted");
  });
});
