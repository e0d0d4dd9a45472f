import { randomUUID } from "node:crypto";
import { Agent } from "node:http";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tool as ToolMessage } from "../../gen/agentplatform/v1/tool_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Role } from "../../src/auth/principal.ts";
import { scopeToTenant } from "../../src/db/tenant.ts";
import { Tool } from "../../src/tools/tool.entity.ts";
import { Code, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { observable } from "../support/observable.ts";

/*
 * Tenant B, as editor and as admin, calls every ToolService RPC against
 * tenant A's tools: it must neither see nor change them, nor learn that they
 * exist (a foreign id answers exactly like an id that never existed).
 */

const A = "iso-a";
const B = "iso-b";
const schema = { type: "object", properties: { q: { type: "string" } }, required: ["q"] };

let s: TestServer;
let tenantA: Client<typeof ToolService>;
/** A's tools as A created them. */
let aTools: ToolMessage[];
/** Ids of tools B created during the tests. */
const bToolIds: string[] = [];

// No keep-alive: an idle pooled connection would hold up the server's shutdown.
const agent = new Agent({ keepAlive: false });

function toolsAs(token: string): Client<typeof ToolService> {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(
    ToolService,
    createConnectTransport({
      baseUrl: s.url,
      httpVersion: "1.1",
      useBinaryFormat: false,
      interceptors: [bearer],
      nodeOptions: { agent },
    }),
  );
}

beforeAll(async () => {
  s = await startTestServer();
  tenantA = toolsAs(await s.token(A));
  aTools = [];
  for (const name of ["alpha", "beta", "gamma", "delta"]) {
    const { tool } = await tenantA.createTool({ tool: { name, description: `A's ${name}`, parameters: schema } });
    aTools.push(tool!);
  }
});
afterAll(() => s?.close());

describe.each(["editor", "admin"] as Role[])("tenant B as %s", (role) => {
  let tenantB: Client<typeof ToolService>;
  beforeAll(async () => {
    tenantB = toolsAs(await s.token(B, [role], `b-${role}`));
  });

  /** B's answer for A's tool next to its answer for an id that never existed. */
  async function expectSameAsUnknown(call: (id: string) => Promise<unknown>, foreignId: string): Promise<void> {
    const unknownId = randomUUID();
    const foreign = await errorOf(call(foreignId));
    const never = await errorOf(call(unknownId));
    expect(foreign.code).toBe(Code.NotFound);
    expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason).toBe("TOOL_NOT_FOUND");
    expect(observable(foreign, foreignId)).toEqual(observable(never, unknownId));
    // The placeholder really replaced something: the id is part of the answer.
    expect(foreign.rawMessage).toContain(foreignId);
  }

  it("gets NOT_FOUND for A's tool, exactly as for an id that never existed", async () => {
    for (const tool of aTools) {
      await expectSameAsUnknown((id) => tenantB.getTool({ toolId: id }), tool.id);
    }
  });

  it("gets NOT_FOUND when updating A's tool, even with A's current etag", async () => {
    const tool = aTools[0]!;
    await expectSameAsUnknown(
      (id) =>
        tenantB.updateTool({
          toolId: id,
          tool: { name: "hijacked", description: "by B" },
          updateMask: { paths: ["name", "description"] },
          etag: tool.etag,
        }),
      tool.id,
    );
    await expectSameAsUnknown(
      (id) => tenantB.updateTool({ toolId: id, tool: { description: "by B" }, updateMask: { paths: ["description"] } }),
      tool.id,
    );
    await expectSameAsUnknown(
      (id) => tenantB.updateTool({ toolId: id, tool: { description: "x" }, updateMask: { paths: ["description"] }, etag: "stale" }),
      tool.id,
    );
  });

  it("gets NOT_FOUND when deleting A's tool, with or without A's etag", async () => {
    const tool = aTools[1]!;
    await expectSameAsUnknown((id) => tenantB.deleteTool({ toolId: id }), tool.id);
    await expectSameAsUnknown((id) => tenantB.deleteTool({ toolId: id, etag: tool.etag }), tool.id);
    await expectSameAsUnknown((id) => tenantB.deleteTool({ toolId: id, etag: "stale" }), tool.id);
  });

  it("lists none of A's tools, with or without a name prefix, on any page", async () => {
    const aIds = new Set(aTools.map((t) => t.id));
    for (const namePrefix of ["", "a", "alpha", "b", "g", "d"]) {
      let pageToken = "";
      do {
        const page = await tenantB.listTools({ namePrefix, pageSize: 1, pageToken });
        for (const t of page.tools) expect(aIds.has(t.id), `${t.name} listed for B`).toBe(false);
        pageToken = page.nextPageToken;
      } while (pageToken);
    }
  });

  it("refuses A's page token", async () => {
    const { nextPageToken } = await tenantA.listTools({ pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    expect((await errorOf(tenantB.listTools({ pageSize: 1, pageToken: nextPageToken }))).code).toBe(Code.InvalidArgument);
  });

  it("creates a tool with the same name as one of A's (names are unique per tenant only)", async () => {
    const taken = role === "editor" ? aTools[2]! : aTools[3]!;
    const { tool } = await tenantB.createTool({ tool: { name: taken.name, description: `B's ${taken.name}` } });
    expect(tool?.id).not.toBe(taken.id);
    bToolIds.push(tool!.id);
    expect((await tenantB.listTools({ namePrefix: taken.name })).tools.map((t) => t.id)).toEqual([tool!.id]);
    // Within B the name is now taken.
    const again = await errorOf(tenantB.createTool({ tool: { name: taken.name, description: "again" } }));
    expect(again.code).toBe(Code.AlreadyExists);
  });

  it("renames its own tool to a name A uses, without touching A's tool", async () => {
    const aName = role === "editor" ? aTools[0]!.name : aTools[1]!.name;
    const { tool } = await tenantB.createTool({ tool: { name: `own-${role}`, description: "B's own" } });
    bToolIds.push(tool!.id);
    const { tool: renamed } = await tenantB.updateTool({
      toolId: tool!.id,
      tool: { name: aName },
      updateMask: { paths: ["name"] },
    });
    expect(renamed?.id).toBe(tool!.id);
    expect(renamed?.name).toBe(aName);
    expect((await errorOf(tenantA.getTool({ toolId: tool!.id }))).code).toBe(Code.NotFound);
  });
});

describe("after tenant B's calls", () => {
  it("A's tools are unchanged, etags included", async () => {
    for (const tool of aTools) {
      expect((await tenantA.getTool({ toolId: tool.id })).tool).toEqual(tool);
    }
    const { tools } = await tenantA.listTools({});
    expect(tools).toEqual([...aTools].sort((x, y) => x.name.localeCompare(y.name)));
  });

  it("nothing of B is in A at the database level", async () => {
    const em = s.orm.em.fork();
    scopeToTenant(em, A);
    const rows = await em.find(Tool, {}, { orderBy: { name: "asc" } });
    expect(rows.map((r) => r.id).sort()).toEqual(aTools.map((t) => t.id).sort());
    expect(rows.every((r) => r.tenantId === A)).toBe(true);
    expect(await em.count(Tool, { id: { $in: bToolIds } })).toBe(0);
    for (const row of rows) {
      const before = aTools.find((t) => t.id === row.id)!;
      expect(row.name).toBe(before.name);
      expect(row.description).toBe(before.description);
    }

    // And below the ORM filter (as the owner, past row-level security): B's
    // rows carry B's tenant id, A has only its own.
    expect(bToolIds).toHaveLength(4);
    const placeholders = bToolIds.map(() => "?").join(", ");
    const bRows = await s.db.sql<{ tenant_id: string }>(`select tenant_id from tools where id in (${placeholders})`, bToolIds);
    expect(bRows.map((r) => r.tenant_id)).toEqual(bToolIds.map(() => B));
    const aRows = await s.db.sql<{ id: string }>("select id from tools where tenant_id = ?", [A]);
    expect(aRows.map((r) => r.id).sort()).toEqual(aTools.map((t) => t.id).sort());
  });
});
