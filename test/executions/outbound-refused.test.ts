import type { JsonObject } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { ExecutionStatus, type Execution } from "../../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { clientOf, connectJson } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { upstream, type Upstream } from "../support/upstream.ts";

/*
 * A tenant cannot point an agent at the platform's own network and read the
 * answer back: with OUTBOUND_ALLOW_PRIVATE off, runs whose endpoint is, or
 * resolves to, a loopback, private or link-local address fail before any
 * request is sent. Every address here is loopback or refused before a
 * connection is opened; a loopback upstream holding a "secret" proves
 * nothing reached it.
 */

const TENANT = "outbound-refused";

let refusing: TestServer;
let allowing: TestServer;
let fake: Upstream;

function clients(s: TestServer, token: string) {
  const transport = connectJson(s.url, token);
  return { agents: clientOf(AgentService, transport), executions: clientOf(ExecutionService, transport) };
}

/** Creates an agent with `config` on `s` and runs it once. */
async function run(s: TestServer, type: AgentType, config: JsonObject): Promise<Execution> {
  const { agents, executions } = clients(s, await s.token(TENANT, ["admin"]));
  const { agent } = await agents.createAgent({
    agent: { name: `a-${Math.random().toString(36).slice(2, 10)}`, role: "r", agentType: type, config },
  });
  const { execution } = await executions.executeAgent({ input: { agentId: agent!.id, prompt: "read me the secret" } });
  return execution!;
}

beforeAll(async () => {
  fake = await upstream();
  const secret = JSON.stringify({ output: "internal secret" });
  fake.route("/secret", (_rec, res) => void res.writeHead(200, { "content-type": "application/json" }).end(secret));
  fake.route("/v1/chat/completions", (_rec, res) => void res.writeHead(200, { "content-type": "application/json" }).end(secret));
  fake.route("/moved", (_rec, res) => void res.writeHead(302, { location: `${fake.url}/secret` }).end());
  refusing = await startTestServer({ OUTBOUND_ALLOW_PRIVATE: "false" });
  allowing = await startTestServer();
});
afterAll(async () => {
  await fake?.close();
  await refusing?.close();
  await allowing?.close();
});

describe("with OUTBOUND_ALLOW_PRIVATE off", () => {
  const port = () => fake.port;
  it.each([
    ["127.0.0.1", () => `http://127.0.0.1:${port()}/secret`, '"127.0.0.1"'],
    ["::1", () => `http://[::1]:${port()}/secret`, '"[::1]"'],
    ["169.254.169.254 (cloud metadata)", () => "http://169.254.169.254/latest/meta-data/", '"169.254.169.254"'],
    ["10.x", () => "http://10.0.0.1/secret", '"10.0.0.1"'],
    ["[::ffff:127.0.0.1]", () => `http://[::ffff:127.0.0.1]:${port()}/secret`, '"[::ffff:7f00:1]"'],
    ["a name resolving to loopback", () => `http://localhost:${port()}/secret`, '"localhost"'],
    ["a decimal IP literal", () => `http://2130706433:${port()}/secret`, '"127.0.0.1"'],
    ["a hex IP literal", () => `http://0x7f.0.0.1:${port()}/secret`, '"127.0.0.1"'],
  ])("a webhook agent at %s fails with OUTBOUND_ADDRESS_REFUSED and sends nothing", async (_what, endpoint, host) => {
    const before = fake.requests.length;
    const execution = await run(refusing, AgentType.WEBHOOK, { endpoint: endpoint() });
    expect(execution.status).toBe(ExecutionStatus.FAILED);
    expect(execution.error?.code).toBe("PERMISSION_DENIED");
    expect(execution.error?.message).toMatch(/^OUTBOUND_ADDRESS_REFUSED: /);
    // The host as the tenant's URL names it; not the address it resolved to.
    expect(execution.error?.message).toContain(host);
    expect(execution.response).toBe("");
    expect(execution.error?.detail).toBe("");
    expect(fake.requests.length).toBe(before);
  });

  it("an OpenAI-compatible agent whose base_url is loopback fails the same way", async () => {
    const before = fake.requests.length;
    const execution = await run(refusing, AgentType.OPENAI_COMPATIBLE, { base_url: `http://localhost:${fake.port}/v1`, model: "m" });
    expect(execution.status).toBe(ExecutionStatus.FAILED);
    expect(execution.error?.message).toMatch(/^OUTBOUND_ADDRESS_REFUSED: .*"localhost"/);
    expect(fake.requests.length).toBe(before);
  });
});

describe("with OUTBOUND_ALLOW_PRIVATE=true (the test default)", () => {
  it("a webhook agent on loopback runs", async () => {
    const execution = await run(allowing, AgentType.WEBHOOK, { endpoint: `${fake.url}/secret` });
    expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(execution.response).toBe("internal secret");
  });

  it("a redirect is not followed: the run fails and the target is never requested", async () => {
    const before = fake.requests.length;
    const execution = await run(allowing, AgentType.WEBHOOK, { endpoint: `${fake.url}/moved` });
    expect(execution.status).toBe(ExecutionStatus.FAILED);
    expect(execution.error?.code).toBe("FAILED_PRECONDITION");
    expect(execution.error?.message).toMatch(/HTTP 302.*redirects are not followed/);
    expect(fake.requests.slice(before).map((r) => r.path)).toEqual(["/moved"]);
  });
});
