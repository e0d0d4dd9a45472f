import { create, fromBinary, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CreateToolRequestSchema, GetToolRequestSchema } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { malformedRequestError } from "../../src/pipeline/interceptors/errors.ts";
import { closeRawAgents, connectCall, envelope, grpcSession, type GrpcSession, type RawAnswer } from "../support/raw-wire.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * A body that does not decode is the client's mistake: INVALID_ARGUMENT with
 * an ErrorInfo (reason MALFORMED_REQUEST), as the README promises of every
 * INVALID_ARGUMENT, on gRPC (binary) and Connect (binary and JSON).
 */

const CREATE_TOOL = "/agentplatform.v1.ToolService/CreateTool";
const GET_TOOL = "/agentplatform.v1.ToolService/GetTool";

/** A Struct nested `depth` deep: {"a":{"a":…}}. */
function nested(depth: number): JsonObject {
  let value: JsonObject = {};
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
}

const BODIES: Record<string, [string, Uint8Array]> = {
  "random bytes": [GET_TOOL, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f])],
  "truncated protobuf": [GET_TOOL, new Uint8Array([0x0a, 0x24, 0x61, 0x62])],
  "invalid UTF-8 in a string": [GET_TOOL, new Uint8Array([0x0a, 0x02, 0xc3, 0x28])],
  "a Struct nested 200 deep": [
    CREATE_TOOL,
    toBinary(CreateToolRequestSchema, create(CreateToolRequestSchema, { tool: { name: "deep", description: "d", parameters: nested(200) } })),
  ],
};

let s: TestServer;
let raw: GrpcSession;
let auth: Record<string, string>;
beforeAll(async () => {
  s = await startTestServer();
  raw = grpcSession(s.url);
  auth = { authorization: `Bearer ${await s.token("acme")}` };
});
afterAll(async () => {
  raw?.close();
  closeRawAgents();
  await s?.close();
});

function expectMalformed(answer: RawAnswer) {
  expect(answer.code).toBe("invalid_argument");
  const info = answer.error?.findDetails(ErrorInfoSchema)[0];
  expect(info?.reason).toBe("MALFORMED_REQUEST");
  expect(info?.domain).toBe("agent-platform");
}

describe("a binary body that does not decode", () => {
  it.each(Object.entries(BODIES))("is INVALID_ARGUMENT, MALFORMED_REQUEST over gRPC: %s", async (_, [procedure, body]) => {
    expectMalformed(await raw.call(procedure, envelope(body), auth));
  });

  it.each(Object.entries(BODIES))("is INVALID_ARGUMENT, MALFORMED_REQUEST over Connect: %s", async (_, [procedure, body]) => {
    expectMalformed(await connectCall(s.url, procedure, body, { contentType: "application/proto", headers: auth }));
  });

  it("gets from malformedRequestError exactly what the wire answers, for a second transport to reuse", async () => {
    const body = BODIES["truncated protobuf"]![1];
    let cause: unknown;
    try {
      fromBinary(GetToolRequestSchema, body);
    } catch (err) {
      cause = err;
    }
    const mapped = malformedRequestError(cause);
    const wire = (await raw.call(GET_TOOL, envelope(body), auth)).error!;
    expect(wire.code).toBe(mapped.code);
    expect(wire.rawMessage).toBe(mapped.rawMessage);
    expect(wire.findDetails(ErrorInfoSchema)).toEqual(mapped.findDetails(ErrorInfoSchema));
  });
});

describe("a JSON body that does not decode", () => {
  const json = (procedure: string, body: string) =>
    connectCall(s.url, procedure, body, { contentType: "application/json", headers: auth });

  it("is INVALID_ARGUMENT, MALFORMED_REQUEST when it is not JSON", async () => {
    expectMalformed(await json(GET_TOOL, '{"toolId":'));
  });

  it("is INVALID_ARGUMENT, MALFORMED_REQUEST when a Struct is nested 200 deep", async () => {
    expectMalformed(await json(CREATE_TOOL, JSON.stringify({ tool: { name: "deep", description: "d", parameters: nested(200) } })));
  });

  it("names the field whose value has the wrong type", async () => {
    const answer = await json(GET_TOOL, '{"toolId":42}');
    expectMalformed(answer);
    expect(answer.error?.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("tool_id");
  });
});
