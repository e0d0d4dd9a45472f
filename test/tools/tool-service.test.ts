import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema, PreconditionFailureSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let s: TestServer;
let tools: ReturnType<typeof clientOf<typeof ToolService>>;
let agents: ReturnType<typeof clientOf<typeof AgentService>>;

beforeAll(async () => {
  s = await startTestServer();
  const transport = connectJson(s.url, await s.token("acme"));
  tools = clientOf(ToolService, transport);
  agents = clientOf(AgentService, transport);
});
afterAll(() => s?.close());

const schema = { type: "object", properties: { q: { type: "string" } }, required: ["q"] };

describe("CreateTool", () => {
  it("stores a tool and returns it with server-set fields", async () => {
    const { tool } = await tools.createTool({ tool: { name: "create-1", description: "d", parameters: schema } });
    expect(tool?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(tool?.parameters).toEqual(schema);
    expect(tool?.etag).not.toBe("");
    expect(tool?.createTime).toBeDefined();
    const { tool: read } = await tools.getTool({ toolId: tool!.id });
    expect(read).toEqual(tool);
  });

  it("rejects a duplicate name with ALREADY_EXISTS", async () => {
    await tools.createTool({ tool: { name: "dup", description: "d" } });
    const err = await errorOf(tools.createTool({ tool: { name: "dup", description: "other" } }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("TOOL_NAME_TAKEN");
  });

  it("lets exactly one of many concurrent creates with one name win", async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => tools.createTool({ tool: { name: "race", description: "d" } })),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results.filter((r) => r.status === "rejected")) {
      expect((r as PromiseRejectedResult).reason.code).toBe(Code.AlreadyExists);
    }
  });

  it("reports every field violation before touching the database", async () => {
    const err = await errorOf(tools.createTool({ tool: { name: "", description: "x".repeat(1001) } }));
    expect(err.code).toBe(Code.InvalidArgument);
    const fields = err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field);
    expect(fields).toEqual(expect.arrayContaining(["tool", "tool.description"]));
  });

  it("rejects parameters that are not a JSON Schema of an object", async () => {
    const notSchema = await errorOf(
      tools.createTool({ tool: { name: "bad-schema", description: "d", parameters: { type: "nonsense" } } }),
    );
    expect(notSchema.code).toBe(Code.InvalidArgument);
    expect(notSchema.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("tool.parameters");
    const notObject = await errorOf(
      tools.createTool({ tool: { name: "bad-schema", description: "d", parameters: { type: "string" } } }),
    );
    expect(notObject.code).toBe(Code.InvalidArgument);
  });

  it("rejects a name with a NUL byte as INVALID_ARGUMENT, not a database error", async () => {
    const err = await errorOf(tools.createTool({ tool: { name: "a\u0000b", description: "d" } }));
    expect(err.code).toBe(Code.InvalidArgument);
  });
});

describe("GetTool", () => {
  it("answers NOT_FOUND for an id that never existed", async () => {
    const err = await errorOf(tools.getTool({ toolId: "00000000-0000-4000-8000-000000000000" }));
    expect(err.code).toBe(Code.NotFound);
  });

  it("answers INVALID_ARGUMENT for an id that is not a UUID", async () => {
    const err = await errorOf(tools.getTool({ toolId: "x' or 1=1 --" }));
    expect(err.code).toBe(Code.InvalidArgument);
  });
});

describe("UpdateTool", () => {
  it("changes only the fields in the mask and bumps the etag", async () => {
    const { tool } = await tools.createTool({ tool: { name: "upd-1", description: "before", parameters: schema } });
    const { tool: updated } = await tools.updateTool({
      toolId: tool!.id,
      tool: { description: "after" },
      updateMask: { paths: ["description"] },
      etag: tool!.etag,
    });
    expect(updated?.description).toBe("after");
    expect(updated?.name).toBe("upd-1");
    expect(updated?.parameters).toEqual(schema);
    expect(updated?.etag).not.toBe(tool!.etag);
  });

  it("answers ABORTED for a stale etag and leaves the tool unchanged", async () => {
    const { tool } = await tools.createTool({ tool: { name: "upd-2", description: "v1" } });
    await tools.updateTool({ toolId: tool!.id, tool: { description: "v2" }, updateMask: { paths: ["description"] } });
    const err = await errorOf(
      tools.updateTool({ toolId: tool!.id, tool: { description: "v3" }, updateMask: { paths: ["description"] }, etag: tool!.etag }),
    );
    expect(err.code).toBe(Code.Aborted);
    expect((await tools.getTool({ toolId: tool!.id })).tool?.description).toBe("v2");
  });

  it("lets one of two concurrent updates with the same etag win", async () => {
    const { tool } = await tools.createTool({ tool: { name: "upd-race", description: "v1" } });
    const update = (d: string) =>
      tools.updateTool({ toolId: tool!.id, tool: { description: d }, updateMask: { paths: ["description"] }, etag: tool!.etag });
    const results = await Promise.allSettled([update("a"), update("b"), update("c")]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results.filter((r) => r.status === "rejected")) {
      expect((r as PromiseRejectedResult).reason.code).toBe(Code.Aborted);
    }
  });

  it("refuses to change an immutable field through the mask", async () => {
    const { tool } = await tools.createTool({ tool: { name: "upd-3", description: "d" } });
    const err = await errorOf(
      tools.updateTool({ toolId: tool!.id, tool: { id: "x" }, updateMask: { paths: ["id"] } }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("update_mask.paths");
  });

  it("refuses to empty the name", async () => {
    const { tool } = await tools.createTool({ tool: { name: "upd-4", description: "d" } });
    const err = await errorOf(tools.updateTool({ toolId: tool!.id, tool: { name: "" }, updateMask: { paths: ["name"] } }));
    expect(err.code).toBe(Code.InvalidArgument);
  });

  it("answers ALREADY_EXISTS when renaming onto a taken name", async () => {
    await tools.createTool({ tool: { name: "taken", description: "d" } });
    const { tool } = await tools.createTool({ tool: { name: "upd-5", description: "d" } });
    const err = await errorOf(tools.updateTool({ toolId: tool!.id, tool: { name: "taken" }, updateMask: { paths: ["name"] } }));
    expect(err.code).toBe(Code.AlreadyExists);
  });

  it("clears the parameters when the mask names them and none are sent", async () => {
    const { tool } = await tools.createTool({ tool: { name: "upd-6", description: "d", parameters: schema } });
    const { tool: updated } = await tools.updateTool({ toolId: tool!.id, tool: {}, updateMask: { paths: ["parameters"] } });
    expect(updated?.parameters).toBeUndefined();
  });
});

describe("DeleteTool", () => {
  it("deletes a tool no agent uses", async () => {
    const { tool } = await tools.createTool({ tool: { name: "del-1", description: "d" } });
    await tools.deleteTool({ toolId: tool!.id });
    expect((await errorOf(tools.getTool({ toolId: tool!.id }))).code).toBe(Code.NotFound);
  });

  it("is FAILED_PRECONDITION while an agent uses the tool, listing the agents", async () => {
    const { tool } = await tools.createTool({ tool: { name: "del-2", description: "d" } });
    const { agent } = await agents.createAgent({
      agent: { name: "uses-del-2", role: "r", agentType: AgentType.WEBHOOK, toolIds: [tool!.id] },
    });
    const agentId = agent!.id;

    const err = await errorOf(tools.deleteTool({ toolId: tool!.id }));
    expect(err.code).toBe(Code.FailedPrecondition);
    const violations = err.findDetails(PreconditionFailureSchema)[0]?.violations;
    expect(violations?.map((v) => v.subject)).toEqual([`agents/${agentId}`]);
    expect((await tools.getTool({ toolId: tool!.id })).tool?.name).toBe("del-2");

    await agents.detachTools({ agentId, toolIds: [tool!.id] });
    await tools.deleteTool({ toolId: tool!.id });
  });

  it("answers ABORTED for a stale etag", async () => {
    const { tool } = await tools.createTool({ tool: { name: "del-3", description: "d" } });
    await tools.updateTool({ toolId: tool!.id, tool: { description: "x" }, updateMask: { paths: ["description"] } });
    expect((await errorOf(tools.deleteTool({ toolId: tool!.id, etag: tool!.etag }))).code).toBe(Code.Aborted);
  });
});

describe("ListTools", () => {
  let pager: typeof tools;
  beforeAll(async () => {
    pager = clientOf(ToolService, connectJson(s.url, await s.token("pager")));
    for (let i = 0; i < 25; i++) {
      await pager.createTool({ tool: { name: `t${String(i).padStart(2, "0")}`, description: "d" } });
    }
    await pager.createTool({ tool: { name: "t_%x", description: "has wildcard characters" } });
  });

  it("walks every tool exactly once across pages, in name order", async () => {
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await pager.listTools({ pageSize: 7, pageToken });
      expect(page.tools.length).toBeLessThanOrEqual(7);
      seen.push(...page.tools.map((t) => t.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toHaveLength(26);
    expect(seen).toEqual([...seen].sort());
  });

  it("has no gaps or duplicates when tools are added between pages", async () => {
    const first = await pager.listTools({ pageSize: 10 });
    await pager.createTool({ tool: { name: "t00a", description: "sorts before the cursor" } });
    await pager.createTool({ tool: { name: "t99", description: "sorts after the cursor" } });
    const rest: string[] = [];
    let pageToken = first.nextPageToken;
    while (pageToken) {
      const page = await pager.listTools({ pageSize: 10, pageToken });
      rest.push(...page.tools.map((t) => t.name));
      pageToken = page.nextPageToken;
    }
    const names = [...first.tools.map((t) => t.name), ...rest];
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain("t99");
    expect(names).toContain("t24");
  });

  it("filters by name prefix, taking LIKE wildcards literally", async () => {
    const { tools: matched } = await pager.listTools({ namePrefix: "t_" });
    expect(matched.map((t) => t.name)).toEqual(["t_%x"]);
    const { tools: t1 } = await pager.listTools({ namePrefix: "t1" });
    expect(t1).toHaveLength(10);
  });

  it("clamps a huge page size and rejects a negative one", async () => {
    const { tools: all } = await pager.listTools({ pageSize: 1_000_000 });
    expect(all.length).toBeGreaterThan(25);
    expect(all.length).toBeLessThanOrEqual(200);
    expect((await errorOf(pager.listTools({ pageSize: -1 }))).code).toBe(Code.InvalidArgument);
  });

  it("rejects a forged page token, one from another filter and one from another tenant", async () => {
    const { nextPageToken } = await pager.listTools({ pageSize: 2 });
    expect(nextPageToken).not.toBe("");
    const forged = await errorOf(pager.listTools({ pageSize: 2, pageToken: `${nextPageToken.slice(0, -2)}AA` }));
    expect(forged.code).toBe(Code.InvalidArgument);
    const otherFilter = await errorOf(pager.listTools({ pageSize: 2, pageToken: nextPageToken, namePrefix: "t1" }));
    expect(otherFilter.code).toBe(Code.InvalidArgument);
    const otherTenant = await errorOf(tools.listTools({ pageSize: 2, pageToken: nextPageToken }));
    expect(otherTenant.code).toBe(Code.InvalidArgument);
    const garbage = await errorOf(pager.listTools({ pageToken: "not a token" }));
    expect(garbage.code).toBe(Code.InvalidArgument);
  });
});
