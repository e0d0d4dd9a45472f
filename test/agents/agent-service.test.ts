import type { JsonObject } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AgentState,
  AgentType,
  AgentVisibility,
  type Agent,
  type AgentVersion,
} from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentOrder, AgentService, type ListAgentsRequest } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema, PreconditionFailureSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AgentSchema } from "../../gen/agentplatform/v1/agent_pb.js";
import { purgeExpiredAgents } from "../../src/agents/purge-job.ts";
import type { Role } from "../../src/auth/principal.ts";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import type { ConnectError } from "@connectrpc/connect";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * AgentService behaviour end to end: a real server on a real port over the
 * file's own database, called through the generated Connect client. Every
 * describe works in a tenant of its own so listings never see another
 * describe's agents.
 *
 * On PostgreSQL every test server of this file uses the same per-worker
 * database name (test/support/db.ts), so the purge-job describe at the end
 * starts its own server only after the main one has been closed.
 */

/** A UUID no resource ever gets. */
const NEVER = "00000000-0000-4000-8000-000000000000";
const DAY_MS = 86_400_000;

type AgentClient = Client<typeof AgentService>;
type ToolClient = Client<typeof ToolService>;
type AgentInit = MessageInitShape<typeof AgentSchema>;
type ListReq = Omit<Partial<ListAgentsRequest>, "$typeName" | "$unknown">;

/** Clients for callers of a server, one per tenant/role/subject. */
function callers(server: () => TestServer) {
  const cache = new Map<string, { agents: AgentClient; tools: ToolClient }>();
  const get = async (tenant: string, role: Role, subject: string) => {
    const key = `${tenant}|${role}|${subject}`;
    let found = cache.get(key);
    if (!found) {
      const s = server();
      const transport = connectJson(s.url, await s.token(tenant, [role], subject));
      found = { agents: clientOf(AgentService, transport), tools: clientOf(ToolService, transport) };
      cache.set(key, found);
    }
    return found;
  };
  return {
    agents: async (tenant: string, role: Role = "editor", subject = "test-user") => (await get(tenant, role, subject)).agents,
    tools: async (tenant: string, role: Role = "editor", subject = "test-user") => (await get(tenant, role, subject)).tools,
  };
}

/** Creates an agent with the required fields filled in. */
async function createAgent(
  client: AgentClient,
  agent: AgentInit & { name: string },
  extra: { templateId?: string; changeNote?: string; requestId?: string } = {},
): Promise<Agent> {
  const { agent: created } = await client.createAgent({
    agent: { role: "tester", agentType: AgentType.WEBHOOK, ...agent },
    ...extra,
  });
  return created!;
}

function reasonOf(err: ConnectError): string | undefined {
  return err.findDetails(ErrorInfoSchema)[0]?.reason;
}

function metadataOf(err: ConnectError): Record<string, string> {
  return err.findDetails(ErrorInfoSchema)[0]?.metadata ?? {};
}

function violatedFields(err: ConnectError): string[] {
  return err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field) ?? [];
}

function preconditionSubjects(err: ConnectError): string[] {
  return err.findDetails(PreconditionFailureSchema)[0]?.violations.map((v) => v.subject) ?? [];
}

/** Every page of a listing, concatenated. */
async function allAgents(client: AgentClient, req: ListReq = {}): Promise<Agent[]> {
  const out: Agent[] = [];
  let pageToken = "";
  for (let i = 0; i < 100; i++) {
    const page = await client.listAgents({ ...req, pageToken });
    out.push(...page.agents);
    pageToken = page.nextPageToken;
    if (!pageToken) return out;
  }
  throw new Error("listing did not end within 100 pages");
}

async function allVersions(client: AgentClient, agentId: string): Promise<AgentVersion[]> {
  const { versions, nextPageToken } = await client.listAgentVersions({ agentId, pageSize: 200 });
  expect(nextPageToken).toBe("");
  return versions;
}

const names = (agents: Agent[]) => agents.map((a) => a.name);

let s: TestServer;
const clients = callers(() => s);

describe("AgentService", () => {
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s?.close());

  describe("CreateAgent", () => {
    const T = "create";

    it("stores every field it is given, with the caller as creator and version 1 active", async () => {
      const alice = await clients.agents(T, "editor", "alice");
      const { tool } = await (await clients.tools(T, "editor", "alice")).createTool({ tool: { name: "create-tool", description: "d" } });
      const config: JsonObject = { model: "m-1", temperature: 0.5, nested: { list: [1, "two", true, null] } };
      const created = await createAgent(
        alice,
        {
          name: "full",
          role: "support triage",
          description: "sorts tickets",
          agentType: AgentType.LANGGRAPH,
          tags: ["red", "blue"],
          capabilities: ["search", "summarize"],
          visibility: AgentVisibility.PRIVATE,
          config,
          systemPrompt: "be brief",
          promptTemplates: [{ name: "greet", template: "Hello {{name}}" }],
          toolIds: [tool!.id],
        },
        { changeNote: "first cut" },
      );

      expect(created.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(created).toMatchObject({
        name: "full",
        role: "support triage",
        description: "sorts tickets",
        agentType: AgentType.LANGGRAPH,
        state: AgentState.ACTIVE,
        tags: ["red", "blue"],
        capabilities: ["search", "summarize"],
        visibility: AgentVisibility.PRIVATE,
        creator: "alice",
        toolIds: [tool!.id],
        credentialIds: [],
        activeVersion: 1,
        config,
        systemPrompt: "be brief",
      });
      expect(created.promptTemplates.map((p) => ({ name: p.name, template: p.template }))).toEqual([
        { name: "greet", template: "Hello {{name}}" },
      ]);
      expect(created.etag).not.toBe("");
      expect(created.createTime).toBeDefined();
      expect(created.updateTime).toBeDefined();
      expect(created.deleteTime).toBeUndefined();
      expect(created.purgeTime).toBeUndefined();

      expect((await alice.getAgent({ agentId: created.id })).agent).toEqual(created);

      const versions = await allVersions(alice, created.id);
      expect(versions).toHaveLength(1);
      expect(versions[0]).toMatchObject({
        agentId: created.id,
        version: 1,
        active: true,
        author: "alice",
        changeNote: "first cut",
        config,
        systemPrompt: "be brief",
      });
      expect(versions[0]!.promptTemplates.map((p) => p.name)).toEqual(["greet"]);
      expect((await alice.getAgentVersion({ agentId: created.id, version: 1 })).version).toEqual(versions[0]);
    });

    it("defaults state to ACTIVE and visibility to TENANT", async () => {
      const created = await createAgent(await clients.agents(T), { name: "defaults" });
      expect(created.state).toBe(AgentState.ACTIVE);
      expect(created.visibility).toBe(AgentVisibility.TENANT);
      expect(created.activeVersion).toBe(1);
    });

    it("honours a non-default initial state", async () => {
      const created = await createAgent(await clients.agents(T), { name: "configuring", state: AgentState.CONFIGURING });
      expect(created.state).toBe(AgentState.CONFIGURING);
    });

    it("ignores output-only fields sent by the client", async () => {
      const created = await createAgent(await clients.agents(T, "editor", "bob"), {
        name: "output-only",
        id: NEVER,
        creator: "mallory",
        etag: 'W/"99"',
        activeVersion: 7,
      });
      expect(created.id).not.toBe(NEVER);
      expect(created.creator).toBe("bob");
      expect(created.activeVersion).toBe(1);
      expect(created.etag).not.toBe('W/"99"');
    });

    it("reports a missing name, role and agent type as field violations", async () => {
      const err = await errorOf((await clients.agents(T)).createAgent({ agent: { description: "nothing else" } }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(violatedFields(err)).toEqual(expect.arrayContaining(["agent.name", "agent.role", "agent.agent_type"]));
    });

    it("refuses to create an agent in state DELETED", async () => {
      const client = await clients.agents(T);
      const err = await errorOf(createAgent(client, { name: "born-deleted", state: AgentState.DELETED }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(violatedFields(err)).toContain("agent.state");
    });

    // Fails today: src/agents/agent.handler.ts ignores request_id, so the retry is ALREADY_EXISTS.
    it("returns the first agent again when a create is retried with the same request_id", async () => {
      const client = await clients.agents(T);
      const requestId = "33333333-3333-4333-8333-333333333333";
      const first = await createAgent(client, { name: "idempotent" }, { requestId });
      const retry = await createAgent(client, { name: "idempotent" }, { requestId });
      expect(retry.id).toBe(first.id);
      expect((await client.listAgents({ namePrefix: "idempotent" })).agents).toHaveLength(1);
    });

    it("rejects a request without an agent", async () => {
      const err = await errorOf((await clients.agents(T)).createAgent({}));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(violatedFields(err)).toContain("agent");
    });

    it("accepts 32 tags of 64 characters but rejects 33 tags or a 65-character tag", async () => {
      const client = await clients.agents(T);
      const tags = Array.from({ length: 32 }, (_, i) => `${String(i).padStart(2, "0")}${"t".repeat(62)}`);
      expect((await createAgent(client, { name: "tags-max", tags })).tags).toEqual(tags);

      const tooMany = await errorOf(createAgent(client, { name: "tags-33", tags: [...tags, "extra"] }));
      expect(tooMany.code).toBe(Code.InvalidArgument);
      expect(violatedFields(tooMany)).toContain("agent.tags");

      const tooLong = await errorOf(createAgent(client, { name: "tags-65", tags: ["ok", "x".repeat(65)] }));
      expect(tooLong.code).toBe(Code.InvalidArgument);
      expect(violatedFields(tooLong)).toContain("agent.tags[1]");

      const { agents } = await client.listAgents({ namePrefix: "tags-" });
      expect(names(agents)).toEqual(["tags-max"]);
    });

    it("answers ALREADY_EXISTS for a name a live agent already has", async () => {
      const client = await clients.agents(T);
      await createAgent(client, { name: "dup" });
      const err = await errorOf(createAgent(client, { name: "dup", role: "other" }));
      expect(err.code).toBe(Code.AlreadyExists);
      expect(reasonOf(err)).toBe("AGENT_NAME_TAKEN");
      expect(metadataOf(err).name).toBe("dup");
    });

    it("lets exactly one of 8 concurrent creates with one name win", async () => {
      const client = await clients.agents(T);
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => createAgent(client, { name: "race", description: `racer ${i}` })),
      );
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results.filter((r): r is PromiseRejectedResult => r.status === "rejected")) {
        expect(r.reason.code).toBe(Code.AlreadyExists);
      }
      const { agents } = await client.listAgents({ namePrefix: "race" });
      expect(agents).toHaveLength(1);
      expect(await allVersions(client, agents[0]!.id)).toHaveLength(1);
    });

    it("refuses a tool id that does not exist as CROSS_TENANT_TOOL naming the id, and creates nothing", async () => {
      const client = await clients.agents(T);
      const { tool } = await (await clients.tools(T)).createTool({ tool: { name: "real-tool", description: "d" } });
      const err = await errorOf(createAgent(client, { name: "ghost-tool", toolIds: [tool!.id, NEVER] }));
      expect(err.code).toBe(Code.PermissionDenied);
      expect(reasonOf(err)).toBe("CROSS_TENANT_TOOL");
      expect(metadataOf(err).tool_ids?.split(",")).toEqual([NEVER]);
      expect((await client.listAgents({ namePrefix: "ghost-tool" })).agents).toEqual([]);
      // Nothing half-made holds the name or links the real tool.
      const ok = await createAgent(client, { name: "ghost-tool" });
      expect(ok.toolIds).toEqual([]);
    });

    it("refuses credential ids as CROSS_TENANT_CREDENTIAL, and creates nothing", async () => {
      const client = await clients.agents(T);
      const id = "11111111-1111-4111-8111-111111111111";
      const err = await errorOf(createAgent(client, { name: "with-credential", credentialIds: [id] }));
      expect(err.code).toBe(Code.PermissionDenied);
      expect(reasonOf(err)).toBe("CROSS_TENANT_CREDENTIAL");
      expect(metadataOf(err).credential_ids).toContain(id);
      expect((await client.listAgents({ namePrefix: "with-credential" })).agents).toEqual([]);
    });
  });

  describe("agent templates", () => {
    const T = "templates";
    const BUILTINS = ["builtin-echo", "builtin-openai-chat", "builtin-webhook"];

    it("lists the built-in templates first, then the tenant's own in name order", async () => {
      const client = await clients.agents("templates-list");
      const b = (await client.createAgentTemplate({ template: { name: "b-own", agentType: AgentType.N8N } })).template!;
      const a = (await client.createAgentTemplate({ template: { name: "a-own", agentType: AgentType.MAKE } })).template!;
      const { templates, nextPageToken } = await client.listAgentTemplates({});
      expect(nextPageToken).toBe("");
      expect(templates.map((t) => t.id)).toEqual([...BUILTINS, a.id, b.id]);
      expect(templates.map((t) => t.builtIn)).toEqual([true, true, true, false, false]);
      expect(templates[1]).toMatchObject({ id: "builtin-openai-chat", agentType: AgentType.OPENAI_COMPATIBLE });
    });

    it("copies a built-in template's type, config and system prompt into version 1", async () => {
      const client = await clients.agents(T);
      const { template } = await client.getAgentTemplate({ templateId: "builtin-openai-chat" });
      expect(template?.builtIn).toBe(true);
      const { agent } = await client.createAgent({ agent: { name: "from-builtin", role: "chat" }, templateId: "builtin-openai-chat" });
      expect(agent).toMatchObject({
        agentType: AgentType.OPENAI_COMPATIBLE,
        config: template!.config,
        systemPrompt: template!.systemPrompt,
        activeVersion: 1,
      });
      expect(template!.systemPrompt).not.toBe("");
      const [v1] = await allVersions(client, agent!.id);
      expect(v1?.config).toEqual(template!.config);
      expect(v1?.changeNote).toContain("builtin-openai-chat");
    });

    it("lets request fields override the template, merging config keys with the request winning", async () => {
      const client = await clients.agents(T);
      const { template } = await client.getAgentTemplate({ templateId: "builtin-openai-chat" });
      const { agent } = await client.createAgent({
        agent: {
          name: "override-builtin",
          role: "chat",
          agentType: AgentType.CUSTOM,
          config: { model: "llama-3", max_tokens: 256 },
          systemPrompt: "You are terse.",
        },
        templateId: "builtin-openai-chat",
      });
      expect(agent?.agentType).toBe(AgentType.CUSTOM);
      expect(agent?.systemPrompt).toBe("You are terse.");
      expect(agent?.config).toEqual({ ...template!.config, model: "llama-3", max_tokens: 256 });
      expect(agent?.config?.base_url).toBe(template!.config?.base_url);
    });

    it("creates, gets, uses and deletes a tenant template", async () => {
      const client = await clients.agents(T);
      const { template } = await client.createAgentTemplate({
        template: {
          name: "crew-template",
          description: "a crew",
          agentType: AgentType.CREWAI,
          config: { crew: "research", retries: 2 },
          systemPrompt: "Work as a team.",
          promptTemplates: [{ name: "task", template: "Do {{task}}" }],
        },
      });
      expect(template?.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(template).toMatchObject({ name: "crew-template", builtIn: false, agentType: AgentType.CREWAI });
      expect(template?.createTime).toBeDefined();
      expect((await client.getAgentTemplate({ templateId: template!.id })).template).toEqual(template);

      const { agent } = await client.createAgent({
        agent: { name: "from-tenant-template", role: "crew", config: { retries: 5 } },
        templateId: template!.id,
      });
      expect(agent?.agentType).toBe(AgentType.CREWAI);
      expect(agent?.config).toEqual({ crew: "research", retries: 5 });
      expect(agent?.systemPrompt).toBe("Work as a team.");
      expect(agent?.promptTemplates.map((p) => [p.name, p.template])).toEqual([["task", "Do {{task}}"]]);

      await client.deleteAgentTemplate({ templateId: template!.id });
      expect((await errorOf(client.getAgentTemplate({ templateId: template!.id }))).code).toBe(Code.NotFound);
      expect((await client.listAgentTemplates({})).templates.map((t) => t.id)).not.toContain(template!.id);
      // The agent made from it keeps its copy.
      expect((await client.getAgent({ agentId: agent!.id })).agent?.config).toEqual({ crew: "research", retries: 5 });
    });

    it("requires a name and an agent type for a template", async () => {
      const err = await errorOf((await clients.agents(T)).createAgentTemplate({ template: { description: "x" } }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(violatedFields(err)).toEqual(expect.arrayContaining(["template.name", "template.agent_type"]));
    });

    // Fails today: src/agents/template.handler.ts ignores request_id, so the retry is ALREADY_EXISTS.
    it("returns the first template again when a create is retried with the same request_id", async () => {
      const client = await clients.agents(T);
      const req = { template: { name: "idempotent-template", agentType: AgentType.CUSTOM }, requestId: "44444444-4444-4444-8444-444444444444" };
      const first = (await client.createAgentTemplate(req)).template!;
      const retry = (await client.createAgentTemplate(req)).template!;
      expect(retry.id).toBe(first.id);
    });

    it("answers ALREADY_EXISTS for a duplicate template name", async () => {
      const client = await clients.agents(T);
      await client.createAgentTemplate({ template: { name: "dup-template", agentType: AgentType.ZAPIER } });
      const err = await errorOf(client.createAgentTemplate({ template: { name: "dup-template", agentType: AgentType.MAKE } }));
      expect(err.code).toBe(Code.AlreadyExists);
      expect(reasonOf(err)).toBe("TEMPLATE_NAME_TAKEN");
    });

    it("answers NOT_FOUND for an unknown template id, wherever it is used", async () => {
      const client = await clients.agents(T);
      expect((await errorOf(client.getAgentTemplate({ templateId: NEVER }))).code).toBe(Code.NotFound);
      expect((await errorOf(client.getAgentTemplate({ templateId: "builtin-nope" }))).code).toBe(Code.NotFound);
      expect((await errorOf(client.deleteAgentTemplate({ templateId: NEVER }))).code).toBe(Code.NotFound);
      const err = await errorOf(client.createAgent({ agent: { name: "unknown-template", role: "r" }, templateId: NEVER }));
      expect(err.code).toBe(Code.NotFound);
      expect((await client.listAgents({ namePrefix: "unknown-template" })).agents).toEqual([]);
    });

    it("refuses to delete a built-in template", async () => {
      const client = await clients.agents(T, "admin");
      const err = await errorOf(client.deleteAgentTemplate({ templateId: "builtin-echo" }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect((await client.getAgentTemplate({ templateId: "builtin-echo" })).template?.builtIn).toBe(true);
    });

    it("pages through built-in and tenant templates two at a time with no gaps or duplicates", async () => {
      const client = await clients.agents("templates-page");
      for (const name of ["t-e", "t-a", "t-d", "t-b", "t-c"]) {
        await client.createAgentTemplate({ template: { name, agentType: AgentType.CUSTOM } });
      }
      const full = (await client.listAgentTemplates({})).templates.map((t) => t.id);
      expect(full).toHaveLength(8);

      const seen: string[] = [];
      const sizes: number[] = [];
      let pageToken = "";
      for (let i = 0; i < 10; i++) {
        const page = await client.listAgentTemplates({ pageSize: 2, pageToken });
        sizes.push(page.templates.length);
        seen.push(...page.templates.map((t) => t.id));
        pageToken = page.nextPageToken;
        if (!pageToken) break;
      }
      expect(pageToken).toBe("");
      expect(sizes).toEqual([2, 2, 2, 2]);
      expect(seen).toEqual(full);
      expect(seen.slice(0, 3)).toEqual(BUILTINS);
    });
  });

  describe("UpdateAgent", () => {
    const T = "update";

    it("requires an update mask", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "no-mask" });
      const err = await errorOf(client.updateAgent({ agentId: agent.id, agent: { role: "changed" } }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(violatedFields(err)).toContain("update_mask");
      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(agent);
    });

    // Fails today: src/common/field-mask.ts treats an empty mask as "every field", so this call
    // empties config, tags and description and appends a version.
    it("treats an empty update mask as missing and changes nothing", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "empty-mask", tags: ["keep"], description: "keep", config: { keep: true } });
      const err = await errorOf(
        client.updateAgent({
          agentId: agent.id,
          agent: { name: "empty-mask", role: "new", agentType: AgentType.CUSTOM, state: AgentState.ACTIVE, visibility: AgentVisibility.TENANT },
          updateMask: { paths: [] },
        }),
      );
      expect(err.code).toBe(Code.InvalidArgument);
      expect(violatedFields(err)).toContain("update_mask");
      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(agent);
      expect(await allVersions(client, agent.id)).toHaveLength(1);
    });

    it("changes labels without making a new version", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "labels", tags: ["a"], config: { k: 1 } });
      const { agent: updated } = await client.updateAgent({
        agentId: agent.id,
        agent: { role: "new role", tags: ["b", "c"], description: "new description", name: "ignored" },
        updateMask: { paths: ["role", "tags", "description"] },
        etag: agent.etag,
      });
      expect(updated).toMatchObject({
        name: "labels",
        role: "new role",
        tags: ["b", "c"],
        description: "new description",
        activeVersion: 1,
        config: { k: 1 },
      });
      expect(updated?.etag).not.toBe(agent.etag);
      expect(await allVersions(client, agent.id)).toHaveLength(1);
    });

    it("appends and activates a version when config or system prompt changes, keeping old versions as they were", async () => {
      const client = await clients.agents(T, "editor", "author-1");
      const agent = await createAgent(client, {
        name: "versioned",
        config: { model: "a" },
        systemPrompt: "one",
        promptTemplates: [{ name: "p", template: "t" }],
      });
      const v1Before = (await client.getAgentVersion({ agentId: agent.id, version: 1 })).version!;

      const editor2 = await clients.agents(T, "editor", "author-2");
      const { agent: afterConfig } = await editor2.updateAgent({
        agentId: agent.id,
        agent: { config: { model: "b", temperature: 1 } },
        updateMask: { paths: ["config"] },
        changeNote: "new model",
      });
      expect(afterConfig).toMatchObject({ activeVersion: 2, config: { model: "b", temperature: 1 }, systemPrompt: "one" });

      const { agent: afterPrompt } = await client.updateAgent({
        agentId: agent.id,
        agent: { systemPrompt: "two" },
        updateMask: { paths: ["system_prompt"] },
      });
      expect(afterPrompt).toMatchObject({ activeVersion: 3, config: { model: "b", temperature: 1 }, systemPrompt: "two" });
      expect(afterPrompt?.promptTemplates.map((p) => p.name)).toEqual(["p"]);

      const versions = await allVersions(client, agent.id);
      expect(versions.map((v) => [v.version, v.active])).toEqual([
        [3, true],
        [2, false],
        [1, false],
      ]);
      expect(versions[1]).toMatchObject({ author: "author-2", changeNote: "new model", config: { model: "b", temperature: 1 } });

      const v1After = (await client.getAgentVersion({ agentId: agent.id, version: 1 })).version!;
      expect(v1After).toEqual({ ...v1Before, active: false });
      expect(v1After.config).toEqual({ model: "a" });
      expect(v1After.systemPrompt).toBe("one");
    });

    it("refuses to update immutable fields through the mask", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "immutable" });
      for (const path of ["id", "creator", "create_time"]) {
        const err = await errorOf(
          client.updateAgent({
            agentId: agent.id,
            agent: { id: NEVER, creator: "mallory", createTime: { seconds: 0n, nanos: 0 } },
            updateMask: { paths: [path] },
          }),
        );
        expect(err.code, path).toBe(Code.InvalidArgument);
        expect(violatedFields(err), path).toEqual(["update_mask.paths"]);
      }
      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(agent);
    });

    it("refuses to empty the name or role", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "not-empty" });
      const err = await errorOf(
        client.updateAgent({ agentId: agent.id, agent: {}, updateMask: { paths: ["name", "role"] } }),
      );
      expect(err.code).toBe(Code.InvalidArgument);
      expect(violatedFields(err)).toEqual(expect.arrayContaining(["agent.name", "agent.role"]));
    });

    it("answers ALREADY_EXISTS when renaming onto a live agent's name", async () => {
      const client = await clients.agents(T);
      await createAgent(client, { name: "rename-target" });
      const agent = await createAgent(client, { name: "rename-source" });
      const err = await errorOf(
        client.updateAgent({ agentId: agent.id, agent: { name: "rename-target" }, updateMask: { paths: ["name"] } }),
      );
      expect(err.code).toBe(Code.AlreadyExists);
      expect((await client.getAgent({ agentId: agent.id })).agent?.name).toBe("rename-source");
    });

    it("answers ABORTED for a stale etag and leaves the agent unchanged", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "stale", config: { v: 1 } });
      const { agent: current } = await client.updateAgent({ agentId: agent.id, agent: { role: "r2" }, updateMask: { paths: ["role"] } });
      const err = await errorOf(
        client.updateAgent({ agentId: agent.id, agent: { config: { v: 2 } }, updateMask: { paths: ["config"] }, etag: agent.etag }),
      );
      expect(err.code).toBe(Code.Aborted);
      expect(reasonOf(err)).toBe("ETAG_MISMATCH");
      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(current);
      expect(await allVersions(client, agent.id)).toHaveLength(1);
    });

    it("lets exactly one of three concurrent updates with one etag win, leaving no version from the losers", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "update-race", config: { n: 0 } });
      const attempts = [
        { agent: { config: { n: 1 } }, updateMask: { paths: ["config"] } },
        { agent: { role: "role-2" }, updateMask: { paths: ["role"] } },
        { agent: { role: "role-3" }, updateMask: { paths: ["role"] } },
      ];
      const results = await Promise.allSettled(attempts.map((a) => client.updateAgent({ agentId: agent.id, etag: agent.etag, ...a })));
      const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
      expect(won).toHaveLength(1);
      for (const r of results.filter((r): r is PromiseRejectedResult => r.status === "rejected")) {
        expect(r.reason.code).toBe(Code.Aborted);
      }
      const winner = won[0]!;
      const { agent: now } = await client.getAgent({ agentId: agent.id });
      const versions = await allVersions(client, agent.id);
      if (winner === 0) {
        expect(now).toMatchObject({ role: "tester", config: { n: 1 }, activeVersion: 2 });
        expect(versions.map((v) => v.version)).toEqual([2, 1]);
      } else {
        expect(now).toMatchObject({ role: `role-${winner + 1}`, config: { n: 0 }, activeVersion: 1 });
        expect(versions.map((v) => v.version)).toEqual([1]);
      }
      expect(versions.filter((v) => v.active)).toHaveLength(1);
    });

    it("makes exactly one new version when three config updates race on one etag", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "config-race", config: { n: 0 } });
      const results = await Promise.allSettled(
        [1, 2, 3].map((n) =>
          client.updateAgent({ agentId: agent.id, agent: { config: { n } }, updateMask: { paths: ["config"] }, etag: agent.etag }),
        ),
      );
      const fulfilled = results.filter((r) => r.status === "fulfilled");
      expect(fulfilled).toHaveLength(1);
      for (const r of results.filter((r): r is PromiseRejectedResult => r.status === "rejected")) {
        expect(r.reason.code).toBe(Code.Aborted);
      }
      const winnerConfig = fulfilled[0]!.value.agent?.config;
      const versions = await allVersions(client, agent.id);
      expect(versions.map((v) => [v.version, v.active])).toEqual([
        [2, true],
        [1, false],
      ]);
      expect(versions[0]?.config).toEqual(winnerConfig);
      expect((await client.getAgent({ agentId: agent.id })).agent?.config).toEqual(winnerConfig);
    });

    it("allows ACTIVE → INACTIVE and refuses INACTIVE → ERROR with FAILED_PRECONDITION", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "transitions" });
      const { agent: inactive } = await client.updateAgent({
        agentId: agent.id,
        agent: { state: AgentState.INACTIVE },
        updateMask: { paths: ["state"] },
      });
      expect(inactive?.state).toBe(AgentState.INACTIVE);

      const err = await errorOf(
        client.updateAgent({ agentId: agent.id, agent: { state: AgentState.ERROR }, updateMask: { paths: ["state"] } }),
      );
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(reasonOf(err)).toBe("STATE_TRANSITION_NOT_ALLOWED");
      expect(preconditionSubjects(err)).toEqual([`agents/${agent.id}`]);
      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(inactive);
    });

    it("refuses state DELETED through UpdateAgent", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "no-delete-by-update" });
      const err = await errorOf(
        client.updateAgent({ agentId: agent.id, agent: { state: AgentState.DELETED }, updateMask: { paths: ["state"] } }),
      );
      expect(err.code).toBe(Code.FailedPrecondition);
      const { agent: now } = await client.getAgent({ agentId: agent.id });
      expect(now?.state).toBe(AgentState.ACTIVE);
      expect(now?.deleteTime).toBeUndefined();
    });

    it("answers NOT_FOUND for an agent that never existed", async () => {
      const err = await errorOf(
        (await clients.agents(T)).updateAgent({ agentId: NEVER, agent: { role: "x" }, updateMask: { paths: ["role"] } }),
      );
      expect(err.code).toBe(Code.NotFound);
    });
  });

  describe("versions", () => {
    const T = "versions";

    it("rolls back to version 1 and forward to version 2 with ActivateAgentVersion", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "rollback", config: { model: "old" }, systemPrompt: "old prompt" });
      const { agent: v2 } = await client.updateAgent({
        agentId: agent.id,
        agent: { config: { model: "new" }, systemPrompt: "new prompt" },
        updateMask: { paths: ["config", "system_prompt"] },
      });
      expect(v2?.activeVersion).toBe(2);

      const { agent: back } = await client.activateAgentVersion({ agentId: agent.id, version: 1, etag: v2!.etag });
      expect(back).toMatchObject({ activeVersion: 1, config: { model: "old" }, systemPrompt: "old prompt" });
      expect(back?.etag).not.toBe(v2!.etag);
      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(back);
      expect((await allVersions(client, agent.id)).map((v) => [v.version, v.active])).toEqual([
        [2, false],
        [1, true],
      ]);

      const stale = await errorOf(client.activateAgentVersion({ agentId: agent.id, version: 2, etag: v2!.etag }));
      expect(stale.code).toBe(Code.Aborted);

      const { agent: forward } = await client.activateAgentVersion({ agentId: agent.id, version: 2, etag: back!.etag });
      expect(forward).toMatchObject({ activeVersion: 2, config: { model: "new" }, systemPrompt: "new prompt" });
      expect(forward?.etag).not.toBe(back!.etag);
      expect((await allVersions(client, agent.id)).map((v) => [v.version, v.active])).toEqual([
        [2, true],
        [1, false],
      ]);

      // An update after a rollback builds on the active version and numbers after the newest.
      await client.activateAgentVersion({ agentId: agent.id, version: 1 });
      const { agent: v3 } = await client.updateAgent({
        agentId: agent.id,
        agent: { systemPrompt: "third" },
        updateMask: { paths: ["system_prompt"] },
      });
      expect(v3).toMatchObject({ activeVersion: 3, config: { model: "old" }, systemPrompt: "third" });
    });

    it("answers NOT_FOUND for a version that does not exist and changes nothing", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "no-such-version" });
      const activate = await errorOf(client.activateAgentVersion({ agentId: agent.id, version: 2 }));
      expect(activate.code).toBe(Code.NotFound);
      expect((await errorOf(client.getAgentVersion({ agentId: agent.id, version: 2 }))).code).toBe(Code.NotFound);
      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(agent);
      expect((await allVersions(client, agent.id)).map((v) => [v.version, v.active])).toEqual([[1, true]]);
    });

    it("pages through versions newest first", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "many-versions", config: { n: 1 } });
      for (let n = 2; n <= 5; n++) {
        await client.updateAgent({ agentId: agent.id, agent: { config: { n } }, updateMask: { paths: ["config"] } });
      }
      const pages: number[][] = [];
      let pageToken = "";
      do {
        const page = await client.listAgentVersions({ agentId: agent.id, pageSize: 2, pageToken });
        pages.push(page.versions.map((v) => v.version));
        pageToken = page.nextPageToken;
      } while (pageToken && pages.length < 10);
      expect(pages).toEqual([[5, 4], [3, 2], [1]]);
    });

    it("holds exactly one active version per agent in the database itself", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "one-active" });
      const insert = (version: number, active: boolean) =>
        s.db.sql(
          "insert into agent_versions (tenant_id, agent_id, version, config, system_prompt, prompt_templates, author, change_note, active, create_time) values (?, ?, ?, '{}', '', '[]', 'sql', '', ?, now())",
          [T, agent.id, version, active],
        );
      // The same row, inactive, is accepted: the refusal below is the index's doing.
      await insert(90, false);
      await expect(insert(91, true)).rejects.toThrow(/agent_versions_one_active|unique/i);

      const rows = await s.db.sql<{ agent_id: string; active: number }>(
        "select agent_id, count(*) filter (where active)::int as active from agent_versions where tenant_id = ? group by agent_id",
        [T],
      );
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.filter((r) => r.active !== 1)).toEqual([]);
    });
  });

  describe("lifecycle", () => {
    const T = "lifecycle";

    it("soft-deletes an agent with a purge time 30 days after its delete time", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "soft" });
      const before = Date.now();
      const { agent: deleted } = await client.deleteAgent({ agentId: agent.id, etag: agent.etag });
      expect(deleted?.state).toBe(AgentState.DELETED);
      expect(deleted?.deleteTime).toBeDefined();
      expect(deleted?.purgeTime).toBeDefined();
      const deleteMs = timestampMs(deleted!.deleteTime!);
      expect(deleteMs).toBeGreaterThanOrEqual(before - 1000);
      expect(timestampMs(deleted!.purgeTime!) - deleteMs).toBe(30 * DAY_MS);
      expect(deleted?.etag).not.toBe(agent.etag);

      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(deleted);

      expect(names(await allAgents(client))).not.toContain("soft");
      expect(names(await allAgents(client, { showDeleted: true }))).toContain("soft");
      expect(names(await allAgents(client, { states: [AgentState.DELETED] }))).toEqual(["soft"]);
      expect(names(await allAgents(client, { states: [AgentState.ACTIVE] }))).not.toContain("soft");
    });

    it("answers ABORTED for a delete with a stale etag", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "delete-stale" });
      await client.updateAgent({ agentId: agent.id, agent: { role: "x" }, updateMask: { paths: ["role"] } });
      expect((await errorOf(client.deleteAgent({ agentId: agent.id, etag: agent.etag }))).code).toBe(Code.Aborted);
      expect((await client.getAgent({ agentId: agent.id })).agent?.state).toBe(AgentState.ACTIVE);
    });

    it("frees a deleted agent's name; undelete needs the name back and restores the pre-delete state", async () => {
      const client = await clients.agents(T);
      const original = await createAgent(client, { name: "reused", tags: ["keep"], config: { c: 1 } });
      const { agent: inactive } = await client.updateAgent({
        agentId: original.id,
        agent: { state: AgentState.INACTIVE },
        updateMask: { paths: ["state"] },
      });
      await client.deleteAgent({ agentId: original.id });

      const successor = await createAgent(client, { name: "reused" });
      expect(successor.id).not.toBe(original.id);

      const taken = await errorOf(client.undeleteAgent({ agentId: original.id }));
      expect(taken.code).toBe(Code.AlreadyExists);
      expect((await client.getAgent({ agentId: original.id })).agent?.state).toBe(AgentState.DELETED);

      await client.updateAgent({ agentId: successor.id, agent: { name: "reused-2" }, updateMask: { paths: ["name"] } });
      const { agent: restored } = await client.undeleteAgent({ agentId: original.id });
      expect(restored).toMatchObject({
        id: original.id,
        name: "reused",
        state: AgentState.INACTIVE,
        tags: ["keep"],
        config: { c: 1 },
        activeVersion: 1,
      });
      expect(restored?.deleteTime).toBeUndefined();
      expect(restored?.purgeTime).toBeUndefined();
      expect(restored?.etag).not.toBe(inactive!.etag);
      expect(names(await allAgents(client, { namePrefix: "reused" })).sort()).toEqual(["reused", "reused-2"]);
    });

    it("refuses to undelete an agent that is not deleted", async () => {
      const client = await clients.agents(T);
      const agent = await createAgent(client, { name: "alive" });
      const err = await errorOf(client.undeleteAgent({ agentId: agent.id }));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(reasonOf(err)).toBe("AGENT_NOT_DELETED");
    });

    it("refuses changes to a deleted agent with FAILED_PRECONDITION", async () => {
      const client = await clients.agents(T);
      const { tool } = await (await clients.tools(T)).createTool({ tool: { name: "deleted-agent-tool", description: "d" } });
      const agent = await createAgent(client, { name: "frozen", toolIds: [tool!.id] });
      const { agent: deleted } = await client.deleteAgent({ agentId: agent.id });
      const calls: [string, () => Promise<unknown>][] = [
        ["UpdateAgent", () => client.updateAgent({ agentId: agent.id, agent: { role: "x" }, updateMask: { paths: ["role"] } })],
        ["AttachTools", () => client.attachTools({ agentId: agent.id, toolIds: [tool!.id] })],
        ["ActivateAgentVersion", () => client.activateAgentVersion({ agentId: agent.id, version: 1 })],
        ["DeleteAgent", () => client.deleteAgent({ agentId: agent.id })],
      ];
      for (const [rpc, call] of calls) {
        const err = await errorOf(call());
        expect(err.code, rpc).toBe(Code.FailedPrecondition);
        expect(reasonOf(err), rpc).toBe("AGENT_DELETED");
      }
      expect((await client.getAgent({ agentId: agent.id })).agent).toEqual(deleted);
    });

    it("refuses to purge a live agent", async () => {
      const admin = await clients.agents(T, "admin", "root");
      const agent = await createAgent(admin, { name: "live-purge" });
      const err = await errorOf(admin.purgeAgent({ agentId: agent.id }));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(reasonOf(err)).toBe("AGENT_NOT_DELETED");
      expect((await admin.getAgent({ agentId: agent.id })).agent).toEqual(agent);
    });

    it("purges a deleted agent for good, with its versions and tool links", async () => {
      const client = await clients.agents(T);
      const admin = await clients.agents(T, "admin", "root");
      const tools = await clients.tools(T);
      const { tool } = await tools.createTool({ tool: { name: "purged-agent-tool", description: "d" } });
      const agent = await createAgent(client, { name: "purge-me", toolIds: [tool!.id], config: { v: 1 } });
      await client.updateAgent({ agentId: agent.id, agent: { config: { v: 2 } }, updateMask: { paths: ["config"] } });
      await client.deleteAgent({ agentId: agent.id });
      expect((await errorOf(tools.deleteTool({ toolId: tool!.id }))).code).toBe(Code.FailedPrecondition);

      await admin.purgeAgent({ agentId: agent.id });

      expect((await errorOf(client.getAgent({ agentId: agent.id }))).code).toBe(Code.NotFound);
      expect((await errorOf(client.getAgentVersion({ agentId: agent.id, version: 1 }))).code).toBe(Code.NotFound);
      expect((await errorOf(client.undeleteAgent({ agentId: agent.id }))).code).toBe(Code.NotFound);
      expect(names(await allAgents(client, { showDeleted: true }))).not.toContain("purge-me");
      const [counts] = await s.db.sql<{ versions: number; links: number }>(
        "select (select count(*)::int from agent_versions where agent_id = ?) as versions, (select count(*)::int from agent_tools where agent_id = ?) as links",
        [agent.id, agent.id],
      );
      expect(counts).toEqual({ versions: 0, links: 0 });
      await tools.deleteTool({ toolId: tool!.id });
    });
  });

  describe("tools", () => {
    const T = "agent-tools";

    it("attaches a tool once however often it is attached", async () => {
      const client = await clients.agents(T);
      const tools = await clients.tools(T);
      const t1 = (await tools.createTool({ tool: { name: "attach-1", description: "d" } })).tool!;
      const t2 = (await tools.createTool({ tool: { name: "attach-2", description: "d" } })).tool!;
      const agent = await createAgent(client, { name: "attacher" });
      const first = (await client.attachTools({ agentId: agent.id, toolIds: [t1.id] })).agent!;
      expect(first.toolIds).toEqual([t1.id]);
      const again = (await client.attachTools({ agentId: agent.id, toolIds: [t1.id] })).agent!;
      expect(again.toolIds).toEqual([t1.id]);
      const both = (await client.attachTools({ agentId: agent.id, toolIds: [t2.id, t1.id] })).agent!;
      expect(both.toolIds).toEqual([t1.id, t2.id].sort());
      expect((await client.getAgent({ agentId: agent.id })).agent?.toolIds).toEqual([t1.id, t2.id].sort());
      expect(both.activeVersion).toBe(1);
    });

    it("attaches nothing when one of the tools is unknown", async () => {
      const client = await clients.agents(T);
      const t = (await (await clients.tools(T)).createTool({ tool: { name: "attach-partial", description: "d" } })).tool!;
      const agent = await createAgent(client, { name: "partial-attacher" });
      const err = await errorOf(client.attachTools({ agentId: agent.id, toolIds: [t.id, NEVER] }));
      expect(err.code).toBe(Code.PermissionDenied);
      expect(reasonOf(err)).toBe("CROSS_TENANT_TOOL");
      expect(metadataOf(err).tool_ids).toBe(NEVER);
      expect((await client.getAgent({ agentId: agent.id })).agent?.toolIds).toEqual([]);
    });

    it("treats detaching a tool that is not attached as a no-op", async () => {
      const client = await clients.agents(T);
      const tools = await clients.tools(T);
      const attached = (await tools.createTool({ tool: { name: "detach-attached", description: "d" } })).tool!;
      const loose = (await tools.createTool({ tool: { name: "detach-loose", description: "d" } })).tool!;
      const agent = await createAgent(client, { name: "detacher", toolIds: [attached.id] });
      const { agent: after } = await client.detachTools({ agentId: agent.id, toolIds: [loose.id, NEVER] });
      expect(after?.toolIds).toEqual([attached.id]);
      const { agent: detached } = await client.detachTools({ agentId: agent.id, toolIds: [attached.id] });
      expect(detached?.toolIds).toEqual([]);
      await tools.deleteTool({ toolId: attached.id });
    });

    it("keeps an attached tool from being deleted, listing every agent that uses it", async () => {
      const client = await clients.agents(T);
      const tools = await clients.tools(T);
      const tool = (await tools.createTool({ tool: { name: "in-use", description: "d" } })).tool!;
      const a = await createAgent(client, { name: "user-a", toolIds: [tool.id] });
      const b = await createAgent(client, { name: "user-b" });
      await client.attachTools({ agentId: b.id, toolIds: [tool.id] });
      const err = await errorOf(tools.deleteTool({ toolId: tool.id }));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(reasonOf(err)).toBe("TOOL_IN_USE");
      expect(preconditionSubjects(err).sort()).toEqual([`agents/${a.id}`, `agents/${b.id}`].sort());
      expect((await tools.getTool({ toolId: tool.id })).tool?.name).toBe("in-use");
    });
  });

  describe("visibility", () => {
    const T = "visibility";
    let privateAgent: Agent;
    let tenantAgent: Agent;

    beforeAll(async () => {
      const x = await clients.agents(T, "editor", "xavier");
      privateAgent = await createAgent(x, { name: "x-private", visibility: AgentVisibility.PRIVATE, config: { v: 1 } });
      await x.updateAgent({ agentId: privateAgent.id, agent: { config: { v: 2 } }, updateMask: { paths: ["config"] } });
      privateAgent = (await x.getAgent({ agentId: privateAgent.id })).agent!;
      tenantAgent = await createAgent(x, { name: "x-tenant" });
    });

    it("hides a private agent from another editor of the tenant as NOT_FOUND", async () => {
      const y = await clients.agents(T, "editor", "yolanda");
      const id = privateAgent.id;
      const calls: [string, (agentId: string) => Promise<unknown>][] = [
        ["GetAgent", (agentId) => y.getAgent({ agentId })],
        ["UpdateAgent", (agentId) => y.updateAgent({ agentId, agent: { role: "hijacked" }, updateMask: { paths: ["role"] } })],
        ["DeleteAgent", (agentId) => y.deleteAgent({ agentId })],
        ["UndeleteAgent", (agentId) => y.undeleteAgent({ agentId })],
        ["ListAgentVersions", (agentId) => y.listAgentVersions({ agentId })],
        ["GetAgentVersion", (agentId) => y.getAgentVersion({ agentId, version: 1 })],
        ["ActivateAgentVersion", (agentId) => y.activateAgentVersion({ agentId, version: 1 })],
        ["DetachTools", (agentId) => y.detachTools({ agentId, toolIds: [NEVER] })],
      ];
      for (const [rpc, call] of calls) {
        const hidden = await errorOf(call(id));
        const never = await errorOf(call(NEVER));
        expect(hidden.code, rpc).toBe(Code.NotFound);
        expect(hidden.rawMessage.replaceAll(id, "<id>"), rpc).toBe(never.rawMessage.replaceAll(NEVER, "<id>"));
      }
      expect(names(await allAgents(y, { showDeleted: true }))).toEqual(["x-tenant"]);
      expect(await allAgents(y, { visibility: AgentVisibility.PRIVATE })).toEqual([]);
      expect(names(await allAgents(y, { creator: "xavier" }))).toEqual(["x-tenant"]);
      expect((await y.getAgent({ agentId: tenantAgent.id })).agent?.name).toBe("x-tenant");

      const viewer = await clients.agents(T, "viewer", "vera");
      expect((await errorOf(viewer.getAgent({ agentId: id }))).code).toBe(Code.NotFound);

      const x = await clients.agents(T, "editor", "xavier");
      expect((await x.getAgent({ agentId: id })).agent).toEqual(privateAgent);
    });

    it("shows a private agent to its creator and to the tenant's admins", async () => {
      const x = await clients.agents(T, "editor", "xavier");
      const admin = await clients.agents(T, "admin", "root");
      expect((await x.getAgent({ agentId: privateAgent.id })).agent).toEqual(privateAgent);
      expect((await admin.getAgent({ agentId: privateAgent.id })).agent).toEqual(privateAgent);
      expect(names(await allAgents(x, { orderBy: AgentOrder.NAME }))).toEqual(["x-private", "x-tenant"]);
      expect(names(await allAgents(admin, { orderBy: AgentOrder.NAME }))).toEqual(["x-private", "x-tenant"]);
      expect(names(await allAgents(admin, { visibility: AgentVisibility.PRIVATE }))).toEqual(["x-private"]);
      expect((await admin.listAgentVersions({ agentId: privateAgent.id })).versions.map((v) => v.version)).toEqual([2, 1]);
      const { agent } = await admin.updateAgent({
        agentId: privateAgent.id,
        agent: { description: "reviewed by an admin" },
        updateMask: { paths: ["description"] },
      });
      expect(agent?.creator).toBe("xavier");
      privateAgent = agent!;
    });

    it("lets another editor see it once it is made visible to the tenant", async () => {
      const x = await clients.agents(T, "editor", "xavier");
      const y = await clients.agents(T, "editor", "yolanda");
      await x.updateAgent({
        agentId: privateAgent.id,
        agent: { visibility: AgentVisibility.TENANT },
        updateMask: { paths: ["visibility"] },
      });
      expect((await y.getAgent({ agentId: privateAgent.id })).agent?.visibility).toBe(AgentVisibility.TENANT);
    });
  });

  describe("roles", () => {
    const T = "roles";

    it("lets a viewer read but not write", async () => {
      const editor = await clients.agents(T);
      const viewer = await clients.agents(T, "viewer", "vic");
      const agent = await createAgent(editor, { name: "read-only" });
      expect((await viewer.getAgent({ agentId: agent.id })).agent).toEqual(agent);
      expect(names((await viewer.listAgents({})).agents)).toContain("read-only");
      expect((await viewer.listAgentVersions({ agentId: agent.id })).versions).toHaveLength(1);
      expect((await viewer.listAgentTemplates({})).templates.length).toBeGreaterThanOrEqual(3);

      const writes: [string, () => Promise<unknown>][] = [
        ["CreateAgent", () => createAgent(viewer, { name: "viewer-made" })],
        ["UpdateAgent", () => viewer.updateAgent({ agentId: agent.id, agent: { role: "x" }, updateMask: { paths: ["role"] } })],
        ["DeleteAgent", () => viewer.deleteAgent({ agentId: agent.id })],
        ["ActivateAgentVersion", () => viewer.activateAgentVersion({ agentId: agent.id, version: 1 })],
        ["CreateAgentTemplate", () => viewer.createAgentTemplate({ template: { name: "v", agentType: AgentType.CUSTOM } })],
      ];
      for (const [rpc, call] of writes) {
        const err = await errorOf(call());
        expect(err.code, rpc).toBe(Code.PermissionDenied);
        expect(reasonOf(err), rpc).toBe("ROLE_REQUIRED");
      }
      expect((await editor.listAgents({ namePrefix: "viewer-made" })).agents).toEqual([]);
      expect((await editor.getAgent({ agentId: agent.id })).agent).toEqual(agent);
    });

    it("needs an admin to purge", async () => {
      const editor = await clients.agents(T);
      const admin = await clients.agents(T, "admin", "root");
      const agent = await createAgent(editor, { name: "purge-needs-admin" });
      await editor.deleteAgent({ agentId: agent.id });
      const err = await errorOf(editor.purgeAgent({ agentId: agent.id }));
      expect(err.code).toBe(Code.PermissionDenied);
      expect(metadataOf(err).role).toBe("admin");
      expect((await editor.getAgent({ agentId: agent.id })).agent?.state).toBe(AgentState.DELETED);
      await admin.purgeAgent({ agentId: agent.id });
      expect((await errorOf(editor.getAgent({ agentId: agent.id }))).code).toBe(Code.NotFound);
    });
  });

  describe("ListAgents", () => {
    const T = "listing";
    const U1 = "user-1";
    const created: Agent[] = [];

    beforeAll(async () => {
      const u1 = await clients.agents(T, "editor", U1);
      const u2 = await clients.agents(T, "editor", "user-2");
      created.push(await createAgent(u1, { name: "alpha-1", agentType: AgentType.LANGCHAIN, tags: ["red"] }));
      created.push(await createAgent(u2, { name: "alpha-2", agentType: AgentType.LANGGRAPH, tags: ["blue"], state: AgentState.INACTIVE }));
      created.push(
        await createAgent(u1, { name: "beta-1", agentType: AgentType.WEBHOOK, tags: ["red", "green"], visibility: AgentVisibility.PRIVATE }),
      );
      const beta2 = await createAgent(u2, { name: "beta-2", agentType: AgentType.CREWAI });
      created.push(
        (await u2.updateAgent({ agentId: beta2.id, agent: { state: AgentState.ERROR }, updateMask: { paths: ["state"] } })).agent!,
      );
      const gamma = await createAgent(u1, { name: "gamma", agentType: AgentType.LANGCHAIN, tags: ["red"] });
      created.push((await u1.deleteAgent({ agentId: gamma.id })).agent!);
      created.push(await createAgent(u1, { name: "alp%_x", agentType: AgentType.N8N }));
    });

    // Which agents match, in code-point order (ordering itself is tested below).
    const list = async (req: ListReq) =>
      names(await allAgents(await clients.agents(T, "editor", U1), req)).sort();

    it("filters by state, counting a deleted agent only as DELETED", async () => {
      expect(await list({ states: [AgentState.INACTIVE] })).toEqual(["alpha-2"]);
      expect(await list({ states: [AgentState.ERROR] })).toEqual(["beta-2"]);
      expect(await list({ states: [AgentState.ACTIVE] })).toEqual(["alp%_x", "alpha-1", "beta-1"]);
      expect(await list({ states: [AgentState.DELETED] })).toEqual(["gamma"]);
      expect(await list({ states: [AgentState.ACTIVE, AgentState.DELETED] })).toEqual(["alp%_x", "alpha-1", "beta-1", "gamma"]);
      expect(await list({ states: [AgentState.INACTIVE, AgentState.ERROR] })).toEqual(["alpha-2", "beta-2"]);
    });

    it("hides deleted agents unless asked", async () => {
      expect(await list({})).toEqual(["alp%_x", "alpha-1", "alpha-2", "beta-1", "beta-2"]);
      expect(await list({ showDeleted: true })).toEqual(["alp%_x", "alpha-1", "alpha-2", "beta-1", "beta-2", "gamma"]);
    });

    it("filters by agent type", async () => {
      expect(await list({ agentTypes: [AgentType.LANGCHAIN, AgentType.WEBHOOK] })).toEqual(["alpha-1", "beta-1"]);
      expect(await list({ agentTypes: [AgentType.LANGCHAIN], showDeleted: true })).toEqual(["alpha-1", "gamma"]);
      expect(await list({ agentTypes: [AgentType.ZAPIER] })).toEqual([]);
    });

    it("filters by tags, matching agents with any of them", async () => {
      expect(await list({ tags: ["red"] })).toEqual(["alpha-1", "beta-1"]);
      expect(await list({ tags: ["blue", "green"] })).toEqual(["alpha-2", "beta-1"]);
      expect(await list({ tags: ["purple"] })).toEqual([]);
    });

    it("filters by name prefix, taking LIKE wildcards literally", async () => {
      expect(await list({ namePrefix: "alpha" })).toEqual(["alpha-1", "alpha-2"]);
      expect(await list({ namePrefix: "alp%" })).toEqual(["alp%_x"]);
      expect(await list({ namePrefix: "alp%_" })).toEqual(["alp%_x"]);
      expect(await list({ namePrefix: "Alpha" })).toEqual([]);
    });

    it("filters by creator and by visibility", async () => {
      expect(await list({ creator: "user-2" })).toEqual(["alpha-2", "beta-2"]);
      expect(await list({ creator: U1, showDeleted: true })).toEqual(["alp%_x", "alpha-1", "beta-1", "gamma"]);
      expect(await list({ visibility: AgentVisibility.PRIVATE })).toEqual(["beta-1"]);
      expect(await list({ visibility: AgentVisibility.TENANT })).toEqual(["alp%_x", "alpha-1", "alpha-2", "beta-2"]);
    });

    it("combines filters", async () => {
      expect(await list({ tags: ["red"], creator: U1, states: [AgentState.ACTIVE, AgentState.DELETED] })).toEqual([
        "alpha-1",
        "beta-1",
        "gamma",
      ]);
      expect(await list({ namePrefix: "beta", agentTypes: [AgentType.CREWAI] })).toEqual(["beta-2"]);
    });

    it("orders by name, and by create time newest first by default", async () => {
      const client = await clients.agents(T, "editor", U1);
      const byName = (await client.listAgents({ orderBy: AgentOrder.NAME, showDeleted: true })).agents;
      // "alp%_x" is left out: where it sorts depends on the database collation.
      const plain = names(byName).filter((n) => n !== "alp%_x");
      expect(plain).toEqual(["alpha-1", "alpha-2", "beta-1", "beta-2", "gamma"]);

      const byDefault = (await client.listAgents({ showDeleted: true })).agents;
      const byCreate = (await client.listAgents({ showDeleted: true, orderBy: AgentOrder.CREATE_TIME_DESC })).agents;
      expect(byDefault).toEqual(byCreate);
      expect(new Set(names(byCreate))).toEqual(new Set(names(created)));
      for (let i = 1; i < byCreate.length; i++) {
        const prev = byCreate[i - 1]!;
        const cur = byCreate[i]!;
        const [a, b] = [timestampMs(prev.createTime!), timestampMs(cur.createTime!)];
        expect(a > b || (a === b && prev.id > cur.id), `${prev.name} before ${cur.name}`).toBe(true);
      }
      // Created one after another, so newest first is the reverse of creation order wherever times differ.
      const createdOrder = names(created);
      const distinct = byCreate.filter((a) => byCreate.filter((b) => timestampMs(b.createTime!) === timestampMs(a.createTime!)).length === 1);
      const positions = names(distinct).map((n) => createdOrder.indexOf(n));
      expect(positions).toEqual([...positions].sort((x, y) => y - x));
    });

    it("answers INVALID_ARGUMENT for a page token reused with another filter or order", async () => {
      const client = await clients.agents(T, "editor", U1);
      const { nextPageToken } = await client.listAgents({ pageSize: 2, orderBy: AgentOrder.NAME });
      expect(nextPageToken).not.toBe("");
      const cases: ListReq[] = [
        { orderBy: AgentOrder.NAME, namePrefix: "alpha" },
        { orderBy: AgentOrder.NAME, tags: ["red"] },
        { orderBy: AgentOrder.NAME, showDeleted: true },
        { orderBy: AgentOrder.CREATE_TIME_DESC },
      ];
      for (const req of cases) {
        const err = await errorOf(client.listAgents({ pageSize: 2, pageToken: nextPageToken, ...req }));
        expect(err.code, JSON.stringify(req)).toBe(Code.InvalidArgument);
        expect(violatedFields(err)).toEqual(["page_token"]);
      }
      const otherTenant = await errorOf(
        (await clients.agents("listing-other")).listAgents({ pageSize: 2, pageToken: nextPageToken, orderBy: AgentOrder.NAME }),
      );
      expect(otherTenant.code).toBe(Code.InvalidArgument);
      // The same filter still works with it.
      const again = await client.listAgents({ pageSize: 2, pageToken: nextPageToken, orderBy: AgentOrder.NAME });
      expect(again.agents).toHaveLength(2);
    });

    // Fails today: src/agents/agent.handler.ts (listAgents) passes UNSPECIFIED to the enum codec's
    // toDb, which throws a plain Error, so the caller gets INTERNAL.
    it("answers INVALID_ARGUMENT, not INTERNAL, for an UNSPECIFIED state or agent type filter", async () => {
      const client = await clients.agents(T, "editor", U1);
      expect((await errorOf(client.listAgents({ states: [AgentState.UNSPECIFIED] }))).code).toBe(Code.InvalidArgument);
      expect((await errorOf(client.listAgents({ agentTypes: [AgentType.UNSPECIFIED] }))).code).toBe(Code.InvalidArgument);
    });

    it("clamps a huge page size and rejects a negative one", async () => {
      const client = await clients.agents(T, "editor", U1);
      expect((await client.listAgents({ pageSize: 1_000_000 })).agents).toHaveLength(5);
      expect((await errorOf(client.listAgents({ pageSize: -1 }))).code).toBe(Code.InvalidArgument);
    });
  });

  describe("ListAgents pagination", () => {
    const T = "paging";
    const original: string[] = Array.from({ length: 12 }, (_, i) => `p${String(i).padStart(2, "0")}`);

    beforeAll(async () => {
      const client = await clients.agents(T);
      for (const name of original) await createAgent(client, { name });
    });

    const walk = async (first: { nextPageToken: string }, req: ListReq) => {
      const client = await clients.agents(T);
      const rest: string[] = [];
      let pageToken = first.nextPageToken;
      for (let i = 0; pageToken && i < 20; i++) {
        const page = await client.listAgents({ ...req, pageToken });
        expect(page.agents.length).toBeLessThanOrEqual(req.pageSize ?? 50);
        rest.push(...names(page.agents));
        pageToken = page.nextPageToken;
      }
      expect(pageToken).toBe("");
      return rest;
    };

    it("walks every agent exactly once by name, with agents added between pages", async () => {
      const client = await clients.agents(T);
      const req = { pageSize: 5, orderBy: AgentOrder.NAME };
      const first = await client.listAgents(req);
      expect(names(first.agents)).toEqual(original.slice(0, 5));
      await createAgent(client, { name: "p00a" }); // sorts before the cursor
      await createAgent(client, { name: "p99" }); // sorts after the cursor
      const seen = [...names(first.agents), ...(await walk(first, req))];
      expect(new Set(seen).size).toBe(seen.length);
      for (const name of original) expect(seen).toContain(name);
      expect(seen).toContain("p99");
      expect(seen).not.toContain("p00a");
      expect(seen).toEqual([...seen].sort());
    });

    it("walks every agent exactly once newest first, with agents added between pages", async () => {
      const client = await clients.agents(T);
      const all = names(await allAgents(client));
      const req = { pageSize: 4, orderBy: AgentOrder.CREATE_TIME_DESC };
      const first = await client.listAgents(req);
      expect(names(first.agents)).toEqual(all.slice(0, 4));
      await createAgent(client, { name: "p-late-1" });
      await createAgent(client, { name: "p-late-2" });
      const seen = [...names(first.agents), ...(await walk(first, req))];
      expect(seen).toEqual(all);
    });

    it("walks a filtered listing across pages with deletes in between", async () => {
      const client = await clients.agents(T);
      const req = { pageSize: 3, orderBy: AgentOrder.NAME, namePrefix: "p0" };
      const first = await client.listAgents(req);
      expect(names(first.agents)).toEqual(["p00", "p00a", "p01"]);
      // Deleting an already served agent must not shift the rest.
      await client.deleteAgent({ agentId: first.agents[1]!.id });
      const seen = [...names(first.agents), ...(await walk(first, req))];
      expect(seen).toEqual(["p00", "p00a", ...original.slice(1, 10)]);
    });
  });

  describe("credentials", () => {
    const T = "agent-credentials";

    const createCredential = async (name: string) => {
      const admin = clientOf(CredentialService, connectJson(s.url, await s.token(T, ["admin"], "root")));
      const { credential } = await admin.createCredential({
        credential: { name, type: CredentialType.BEARER_TOKEN },
        secret: { value: { case: "bearerToken", value: { token: "tok-0123456789abcdef" } } },
      });
      return credential!;
    };

    it("binds a credential once however often it is bound, and unbinding one not bound is a no-op", async () => {
      const client = await clients.agents(T);
      const c1 = await createCredential("cred-1");
      const c2 = await createCredential("cred-2");
      const agent = await createAgent(client, { name: "with-credentials", credentialIds: [c1.id] });
      expect(agent.credentialIds).toEqual([c1.id]);

      const { agent: bound } = await client.bindCredentials({ agentId: agent.id, credentialIds: [c2.id, c1.id] });
      expect(bound?.credentialIds).toEqual([c1.id, c2.id].sort());
      expect(bound?.etag).not.toBe(agent.etag);
      const { agent: again } = await client.bindCredentials({ agentId: agent.id, credentialIds: [c2.id] });
      expect(again?.credentialIds).toEqual([c1.id, c2.id].sort());

      const { agent: unbound } = await client.unbindCredentials({ agentId: agent.id, credentialIds: [c1.id] });
      expect(unbound?.credentialIds).toEqual([c2.id]);
      const { agent: noop } = await client.unbindCredentials({ agentId: agent.id, credentialIds: [c1.id] });
      expect(noop?.credentialIds).toEqual([c2.id]);
      expect((await client.getAgent({ agentId: agent.id })).agent?.credentialIds).toEqual([c2.id]);
    });

    it("refuses to bind an unknown credential as CROSS_TENANT_CREDENTIAL, binding nothing", async () => {
      const client = await clients.agents(T);
      const c = await createCredential("cred-partial");
      const agent = await createAgent(client, { name: "partial-binder" });
      const err = await errorOf(client.bindCredentials({ agentId: agent.id, credentialIds: [c.id, NEVER] }));
      expect(err.code).toBe(Code.PermissionDenied);
      expect(reasonOf(err)).toBe("CROSS_TENANT_CREDENTIAL");
      expect(metadataOf(err).credential_ids).toBe(NEVER);
      expect((await client.getAgent({ agentId: agent.id })).agent?.credentialIds).toEqual([]);
    });

    it("refuses to bind credentials to a deleted agent", async () => {
      const client = await clients.agents(T);
      const c = await createCredential("cred-deleted-agent");
      const agent = await createAgent(client, { name: "deleted-binder" });
      await client.deleteAgent({ agentId: agent.id });
      const err = await errorOf(client.bindCredentials({ agentId: agent.id, credentialIds: [c.id] }));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(reasonOf(err)).toBe("AGENT_DELETED");
    });
  });

  describe("GetAgent", () => {
    it("answers NOT_FOUND for an id that never existed and INVALID_ARGUMENT for one that is not a UUID", async () => {
      const client = await clients.agents("get");
      const missing = await errorOf(client.getAgent({ agentId: NEVER }));
      expect(missing.code).toBe(Code.NotFound);
      expect(reasonOf(missing)).toBe("AGENT_NOT_FOUND");
      expect((await errorOf(client.getAgent({ agentId: "x' or 1=1 --" }))).code).toBe(Code.InvalidArgument);
    });
  });
});

describe("periodic purge (AGENT_RETENTION_DAYS=0)", () => {
  beforeAll(async () => {
    s = await startTestServer({ AGENT_RETENTION_DAYS: "0", PURGE_INTERVAL_MS: "0" });
  });
  afterAll(() => s?.close());

  it("purges every tenant's expired agents and keeps live ones and unexpired ones", async () => {
    const fresh = callers(() => s);
    const a = await fresh.agents("purge-a");
    const b = await fresh.agents("purge-b");
    const tools = await fresh.tools("purge-a");
    const { tool } = await tools.createTool({ tool: { name: "purge-tool", description: "d" } });

    const aDead = await createAgent(a, { name: "a-dead", toolIds: [tool!.id] });
    const aLive = await createAgent(a, { name: "a-live" });
    const bDead = await createAgent(b, { name: "b-dead" });
    const { agent: aDeleted } = await a.deleteAgent({ agentId: aDead.id });
    const { agent: bDeleted } = await b.deleteAgent({ agentId: bDead.id });
    expect(aDeleted?.purgeTime).toEqual(aDeleted?.deleteTime);
    expect(bDeleted?.purgeTime).toEqual(bDeleted?.deleteTime);

    // Before either purge time nothing goes.
    const early = new Date(timestampMs(aDeleted!.purgeTime!) - 1);
    expect(await purgeExpiredAgents(s.orm, early)).toBe(0);
    expect((await a.getAgent({ agentId: aDead.id })).agent?.state).toBe(AgentState.DELETED);

    expect(await purgeExpiredAgents(s.orm)).toBe(2);

    expect((await errorOf(a.getAgent({ agentId: aDead.id }))).code).toBe(Code.NotFound);
    expect((await errorOf(b.getAgent({ agentId: bDead.id }))).code).toBe(Code.NotFound);
    expect((await a.getAgent({ agentId: aLive.id })).agent).toEqual(aLive);
    // Its tool link went with it.
    await tools.deleteTool({ toolId: tool!.id });
    expect(await purgeExpiredAgents(s.orm)).toBe(0);
  });
});
