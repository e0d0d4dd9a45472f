import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { closeRawAgents, connectCall, connectGet, envelope, type RawAnswer } from "../support/raw-wire.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * JSON requests are decoded strictly: a field or enum name the contract does
 * not know is INVALID_ARGUMENT naming it, on every protocol that carries
 * JSON. Ignoring them turned a filter with a misspelt state into no filter.
 */

const LIST_AGENTS = "/agentplatform.v1.AgentService/ListAgents";
const CREATE_AGENT = "/agentplatform.v1.AgentService/CreateAgent";

let s: TestServer;
let auth: Record<string, string>;
beforeAll(async () => {
  s = await startTestServer();
  auth = { authorization: `Bearer ${await s.token("acme")}` };
});
afterAll(async () => {
  closeRawAgents();
  await s?.close();
});

const connectJson = (procedure: string, json: string) =>
  connectCall(s.url, procedure, json, { contentType: "application/json", headers: auth });
const grpcWebJson = (procedure: string, json: string) =>
  connectCall(s.url, procedure, envelope(new TextEncoder().encode(json)), {
    contentType: "application/grpc-web+json",
    headers: { ...auth, "x-grpc-web": "1" },
  });

/** Asserts INVALID_ARGUMENT whose BadRequest names `field` and whose ErrorInfo says MALFORMED_REQUEST. */
function expectRefused(answer: RawAnswer, field: string) {
  expect(answer.code).toBe("invalid_argument");
  expect(answer.error?.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual([field]);
  expect(answer.error?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("MALFORMED_REQUEST");
}

describe("JSON enum names", () => {
  it("refuses a filter with an unknown state instead of listing every agent (Connect)", async () => {
    expectRefused(await connectJson(LIST_AGENTS, '{"states":["AGENT_STATE_BOGUS"]}'), "states");
  });

  it("refuses an unknown enum name in a nested message, naming its path", async () => {
    const answer = await connectJson(CREATE_AGENT, '{"agent":{"name":"a","role":"r","agentType":"AGENT_TYPE_NOPE"}}');
    expectRefused(answer, "agent.agent_type");
  });

  it("refuses it over gRPC-Web JSON", async () => {
    expectRefused(await grpcWebJson(LIST_AGENTS, '{"states":["AGENT_STATE_BOGUS"]}'), "states");
  });

  it("refuses it in a Connect GET request", async () => {
    expectRefused(await connectGet(s.url, LIST_AGENTS, '{"states":["AGENT_STATE_BOGUS"]}', auth), "states");
  });

  it("still accepts known names, by their enum name or number", async () => {
    expect((await connectJson(LIST_AGENTS, '{"states":["AGENT_STATE_ACTIVE", 2]}')).code).toBe("ok");
  });
});

describe("JSON field names", () => {
  it("refuses an unknown field, naming it in the message and the BadRequest", async () => {
    const answer = await connectJson(LIST_AGENTS, '{"stats":["AGENT_STATE_ACTIVE"]}');
    expectRefused(answer, "stats");
    expect(answer.message).toContain('"stats"');
  });

  it("refuses an unknown field in a nested message, naming its path", async () => {
    expectRefused(await connectJson(CREATE_AGENT, '{"agent":{"nmae":"a","role":"r"}}'), "agent.nmae");
  });

  it("refuses it over gRPC-Web JSON and in a GET request", async () => {
    expectRefused(await grpcWebJson(LIST_AGENTS, '{"pageSise":5}'), "pageSise");
    expectRefused(await connectGet(s.url, LIST_AGENTS, '{"pageSise":5}', auth), "pageSise");
  });

  it("accepts a field by its proto name as well as its JSON name", async () => {
    expect((await connectJson(LIST_AGENTS, '{"page_size":5,"showDeleted":true}')).code).toBe("ok");
  });

  it("leaves the keys of a Struct free", async () => {
    const agent = { name: "free", role: "r", agentType: "AGENT_TYPE_CUSTOM", config: { endpoint: "https://example.com/run", anyKey: { nested: 1 } } };
    const answer = await connectJson(CREATE_AGENT, JSON.stringify({ agent }));
    expect(answer.code).toBe("ok");
  });

  it("refuses it on a server stream over Connect streaming JSON", async () => {
    const body = envelope(new TextEncoder().encode('{"executionId":"00000000-0000-4000-8000-000000000000","afterSeq":1}'));
    const answer = await connectCall(s.url, "/agentplatform.v1.ExecutionService/WatchExecution", body, {
      contentType: "application/connect+json",
      headers: auth,
    });
    expectRefused(answer, "afterSeq");
  });

  it("names a field whose value has the wrong type", async () => {
    expectRefused(await connectJson(LIST_AGENTS, '{"pageSize":"many"}'), "page_size");
  });
});
