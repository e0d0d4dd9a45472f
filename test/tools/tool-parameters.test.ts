import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonObject } from "@bufbuild/protobuf";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

// Tool parameters are JSON Schemas written in whatever dialect the tool's
// author used: MCP tool definitions and OpenAI function schemas use 2020-12.

let s: TestServer;
let tools: ReturnType<typeof clientOf<typeof ToolService>>;

beforeAll(async () => {
  s = await startTestServer();
  tools = clientOf(ToolService, connectJson(s.url, await s.token("acme")));
});
afterAll(() => s?.close());

const object = { type: "object", properties: { q: { type: "string" } }, required: ["q"] };
let n = 0;
const create = (parameters: JsonObject) =>
  tools.createTool({ tool: { name: `params-${++n}`, description: "d", parameters } });

async function expectSchemaRefused(parameters: JsonObject) {
  const err = await errorOf(create(parameters));
  expect(err.code).toBe(Code.InvalidArgument);
  expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("tool.parameters");
  expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("INVALID_JSON_SCHEMA");
  return err;
}

describe("CreateTool parameters", () => {
  it.each([
    ["draft-07", "http://json-schema.org/draft-07/schema#"],
    ["2019-09", "https://json-schema.org/draft/2019-09/schema"],
    ["2020-12", "https://json-schema.org/draft/2020-12/schema"],
  ])("accepts a schema that declares the %s dialect and stores it as sent", async (_, dialect) => {
    const parameters = { $schema: dialect, ...object };
    const { tool } = await create(parameters);
    expect(tool?.parameters).toEqual(parameters);
  });

  it("accepts a 2020-12 schema whose properties refer to $defs", async () => {
    const parameters = {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      $defs: { unit: { enum: ["c", "f"] } },
      properties: { unit: { $ref: "#/$defs/unit" }, days: { type: "array", prefixItems: [{ type: "integer" }] } },
    };
    const { tool } = await create(parameters);
    expect(tool?.parameters).toEqual(parameters);
  });

  it("accepts the same schema many times (each tool its own copy, one $id among them)", async () => {
    const parameters = { $id: "https://example.com/tools/search", ...object };
    for (let i = 0; i < 3; i++) await create(parameters);
  });

  it("refuses a dialect it does not know, naming the field", async () => {
    const err = await expectSchemaRefused({ $schema: "https://example.com/my-dialect", ...object });
    expect(err.rawMessage).toContain("$schema");
  });

  it("refuses a $ref that points nowhere", async () => {
    await expectSchemaRefused({ type: "object", properties: { a: { $ref: "#/$defs/missing" } } });
  });

  it("refuses a keyword whose value breaks the 2020-12 meta-schema", async () => {
    await expectSchemaRefused({ $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", prefixItems: {} });
  });

  it("checks an update's parameters the same way", async () => {
    const { tool } = await create(object);
    const err = await errorOf(
      tools.updateTool({
        toolId: tool!.id,
        etag: tool!.etag,
        tool: { parameters: { $schema: "https://example.com/nope", ...object } },
        updateMask: { paths: ["parameters"] },
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("tool.parameters");
  });
});
