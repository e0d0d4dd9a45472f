import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType, AgentVisibility, type Agent, type AgentTemplate } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType, type Credential } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import type { Tool } from "../../gen/agentplatform/v1/tool_pb.js";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
} from "../../gen/google/rpc/error_details_pb.js";
import type { Role } from "../../src/auth/principal.ts";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { observable } from "../support/observable.ts";

/*
 * Tenant isolation of AgentService. Tenant A owns agents (with versions and
 * a tool), a deleted agent and a template; tenant B, as editor and as admin,
 * calls every RPC on A's ids. Each answer must be exactly what B gets for an
 * id that never existed (code, message and details, with the id replaced by a
 * placeholder), so B cannot even learn that A's ids exist. Afterwards A's data
 * is unchanged.
 */

const NEVER = "00000000-0000-4000-8000-000000000000";
const NEVER_TEMPLATE = "00000000-0000-4000-8000-00000000000e";
const NEVER_TOOL = "00000000-0000-4000-8000-0000000000f0";
const NEVER_CREDENTIAL = "00000000-0000-4000-8000-0000000000c0";

type AgentClient = Client<typeof AgentService>;

let s: TestServer;
const clients = new Map<
  string,
  { agents: AgentClient; tools: Client<typeof ToolService>; credentials: Client<typeof CredentialService> }
>();

async function as(tenant: string, role: Role, subject: string) {
  const key = `${tenant}|${role}|${subject}`;
  let found = clients.get(key);
  if (!found) {
    const transport = connectJson(s.url, await s.token(tenant, [role], subject));
    found = {
      agents: clientOf(AgentService, transport),
      tools: clientOf(ToolService, transport),
      credentials: clientOf(CredentialService, transport),
    };
    clients.set(key, found);
  }
  return found;
}


/** A's world, as read by A before B does anything. */
interface Snapshot {
  agents: (Agent | undefined)[];
  versions: unknown[];
  tool: Tool | undefined;
  credential: Credential | undefined;
  template: AgentTemplate | undefined;
  listed: string[];
}

let aAgent: Agent; // live, TENANT, two versions, A's tool and credential attached
let aPrivate: Agent; // live, PRIVATE
let aDeleted: Agent; // soft-deleted
let aTool: Tool;
let aTemplate: AgentTemplate;
let bAgent: Agent;
let bTool: Tool;
let aCredential: Credential;
let bCredential: Credential;

async function createCredential(tenant: string, name: string): Promise<Credential> {
  const { credentials } = await as(tenant, "admin", `${tenant}-admin`);
  const { credential } = await credentials.createCredential({
    credential: { name, type: CredentialType.BEARER_TOKEN },
    secret: { value: { case: "bearerToken", value: { token: `${name}-0123456789abcdef` } } },
  });
  return credential!;
}
let before: Snapshot;

async function snapshotOfA(): Promise<Snapshot> {
  const { agents } = await as("tenant-a", "admin", "a-admin");
  const ids = [aAgent.id, aPrivate.id, aDeleted.id];
  return {
    agents: await Promise.all(ids.map(async (agentId) => (await agents.getAgent({ agentId })).agent)),
    versions: await Promise.all(ids.map(async (agentId) => (await agents.listAgentVersions({ agentId })).versions)),
    tool: (await (await as("tenant-a", "admin", "a-admin")).tools.getTool({ toolId: aTool.id })).tool,
    credential: (await (await as("tenant-a", "admin", "tenant-a-admin")).credentials.getCredential({ credentialId: aCredential.id }))
      .credential,
    template: (await agents.getAgentTemplate({ templateId: aTemplate.id })).template,
    listed: (await agents.listAgents({ showDeleted: true, pageSize: 200 })).agents.map((a) => a.id).sort(),
  };
}

beforeAll(async () => {
  s = await startTestServer();
  const a = await as("tenant-a", "editor", "a-user");
  aCredential = await createCredential("tenant-a", "a-credential");
  bCredential = await createCredential("tenant-b", "b-credential");
  aTool = (await a.tools.createTool({ tool: { name: "a-tool", description: "A's tool" } })).tool!;
  aTemplate = (
    await a.agents.createAgentTemplate({
      template: { name: "a-template", agentType: AgentType.LANGCHAIN, config: { secret: "a" }, systemPrompt: "A only" },
    })
  ).template!;
  const created = (
    await a.agents.createAgent({
      agent: { name: "a-agent", role: "a", agentType: AgentType.LANGCHAIN, toolIds: [aTool.id], credentialIds: [aCredential.id] },
      templateId: aTemplate.id,
    })
  ).agent!;
  await a.agents.updateAgent({ agentId: created.id, agent: { systemPrompt: "A v2" }, updateMask: { paths: ["system_prompt"] } });
  aAgent = (await a.agents.getAgent({ agentId: created.id })).agent!;
  aPrivate = (
    await a.agents.createAgent({ agent: { name: "a-private", role: "a", agentType: AgentType.CUSTOM, visibility: AgentVisibility.PRIVATE } })
  ).agent!;
  const doomed = (await a.agents.createAgent({ agent: { name: "a-deleted", role: "a", agentType: AgentType.CUSTOM } })).agent!;
  aDeleted = (await a.agents.deleteAgent({ agentId: doomed.id })).agent!;

  const b = await as("tenant-b", "editor", "b-user");
  bTool = (await b.tools.createTool({ tool: { name: "b-tool", description: "B's tool" } })).tool!;
  bAgent = (await b.agents.createAgent({ agent: { name: "b-agent", role: "b", agentType: AgentType.WEBHOOK } })).agent!;

  before = await snapshotOfA();
});
afterAll(() => s?.close());

/** Every agent RPC that takes an agent id, as B would call it. */
function agentCalls(client: AgentClient): [string, (agentId: string) => Promise<unknown>][] {
  return [
    ["GetAgent", (agentId) => client.getAgent({ agentId })],
    ["UpdateAgent", (agentId) => client.updateAgent({ agentId, agent: { role: "stolen" }, updateMask: { paths: ["role"] } })],
    ["UpdateAgent(config)", (agentId) => client.updateAgent({ agentId, agent: { config: { x: 1 } }, updateMask: { paths: ["config"] } })],
    ["DeleteAgent", (agentId) => client.deleteAgent({ agentId })],
    ["UndeleteAgent", (agentId) => client.undeleteAgent({ agentId })],
    ["AttachTools", (agentId) => client.attachTools({ agentId, toolIds: [bTool.id] })],
    ["AttachTools(A's tool)", (agentId) => client.attachTools({ agentId, toolIds: [aTool.id] })],
    ["DetachTools", (agentId) => client.detachTools({ agentId, toolIds: [aTool.id] })],
    ["BindCredentials", (agentId) => client.bindCredentials({ agentId, credentialIds: [bCredential.id] })],
    ["UnbindCredentials", (agentId) => client.unbindCredentials({ agentId, credentialIds: [aCredential.id] })],
    ["ListAgentVersions", (agentId) => client.listAgentVersions({ agentId })],
    ["GetAgentVersion", (agentId) => client.getAgentVersion({ agentId, version: 1 })],
    ["ActivateAgentVersion", (agentId) => client.activateAgentVersion({ agentId, version: 1 })],
  ];
}

describe.each([
  { role: "editor" as const, subject: "b-user" },
  { role: "admin" as const, subject: "b-admin" },
])("tenant B as $role", ({ role, subject }) => {
  it("gets for every agent RPC on A's agents the same NOT_FOUND as for an id that never existed", async () => {
    const { agents } = await as("tenant-b", role, subject);
    const calls = agentCalls(agents);
    if (role === "admin") calls.push(["PurgeAgent", (agentId) => agents.purgeAgent({ agentId })]);
    for (const target of [aAgent, aPrivate, aDeleted]) {
      for (const [rpc, call] of calls) {
        const label = `${rpc} on ${target.name}`;
        const foreign = await errorOf(call(target.id));
        const never = await errorOf(call(NEVER));
        expect(foreign.code, label).toBe(Code.NotFound);
        expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason, label).toMatch(/_NOT_FOUND$/);
        expect(observable(foreign, target.id), label).toEqual(observable(never, NEVER));
      }
    }
  });

  it("gets NOT_FOUND for A's template, as for one that never existed", async () => {
    const { agents } = await as("tenant-b", role, subject);
    const calls: [string, (id: string) => Promise<unknown>][] = [
      ["GetAgentTemplate", (templateId) => agents.getAgentTemplate({ templateId })],
      ["DeleteAgentTemplate", (templateId) => agents.deleteAgentTemplate({ templateId })],
      [
        "CreateAgent(template_id)",
        (templateId) => agents.createAgent({ agent: { name: `from-a-template-${role}`, role: "b" }, templateId }),
      ],
    ];
    for (const [rpc, call] of calls) {
      const foreign = await errorOf(call(aTemplate.id));
      const never = await errorOf(call(NEVER_TEMPLATE));
      expect(foreign.code, rpc).toBe(Code.NotFound);
      expect(observable(foreign, aTemplate.id), rpc).toEqual(observable(never, NEVER_TEMPLATE));
    }
  });

  it("sees nothing of A in its listings", async () => {
    const { agents } = await as("tenant-b", role, subject);
    const listed = (await agents.listAgents({ showDeleted: true, pageSize: 200 })).agents;
    expect(listed.map((a) => a.id)).toEqual([bAgent.id]);
    expect((await agents.listAgents({ creator: "a-user", showDeleted: true })).agents).toEqual([]);
    expect((await agents.listAgents({ namePrefix: "a-", showDeleted: true })).agents).toEqual([]);
    expect((await agents.listAgents({ agentTypes: [AgentType.LANGCHAIN, AgentType.CUSTOM], showDeleted: true })).agents).toEqual([]);

    const templates = (await agents.listAgentTemplates({ pageSize: 200 })).templates;
    expect(templates.every((t) => t.builtIn)).toBe(true);
    expect(templates.map((t) => t.id)).not.toContain(aTemplate.id);
  });

  it("gets CROSS_TENANT_TOOL for A's tool on its own agent, as for a tool that never existed", async () => {
    const { agents } = await as("tenant-b", role, subject);
    const foreign = await errorOf(agents.attachTools({ agentId: bAgent.id, toolIds: [aTool.id] }));
    const never = await errorOf(agents.attachTools({ agentId: bAgent.id, toolIds: [NEVER_TOOL] }));
    expect(foreign.code).toBe(Code.PermissionDenied);
    expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CROSS_TENANT_TOOL");
    expect(foreign.findDetails(ErrorInfoSchema)[0]?.metadata.tool_ids).toBe(aTool.id);
    expect(observable(foreign, aTool.id)).toEqual(observable(never, NEVER_TOOL));
    expect((await agents.getAgent({ agentId: bAgent.id })).agent?.toolIds).toEqual([]);

    // Detaching A's tool from B's agent touches nothing of A.
    const { agent } = await agents.detachTools({ agentId: bAgent.id, toolIds: [aTool.id] });
    expect(agent?.toolIds).toEqual([]);
  });

  it("gets CROSS_TENANT_CREDENTIAL for A's credential, as for a credential that never existed", async () => {
    const { agents } = await as("tenant-b", role, subject);
    const bind = (credentialId: string) => agents.bindCredentials({ agentId: bAgent.id, credentialIds: [credentialId] });
    const create = (credentialId: string) =>
      agents.createAgent({ agent: { name: `b-with-a-credential-${role}`, role: "b", agentType: AgentType.WEBHOOK, credentialIds: [credentialId] } });
    for (const [rpc, call] of [["BindCredentials", bind], ["CreateAgent", create]] as const) {
      const foreign = await errorOf(call(aCredential.id));
      const never = await errorOf(call(NEVER_CREDENTIAL));
      expect(foreign.code, rpc).toBe(Code.PermissionDenied);
      expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason, rpc).toBe("CROSS_TENANT_CREDENTIAL");
      expect(observable(foreign, aCredential.id), rpc).toEqual(observable(never, NEVER_CREDENTIAL));
    }
    expect((await agents.getAgent({ agentId: bAgent.id })).agent?.credentialIds).toEqual([]);
    expect((await agents.listAgents({ namePrefix: "b-with-a-credential" })).agents).toEqual([]);
  });

  it("gets CROSS_TENANT_TOOL when creating an agent with A's tool, as for a tool that never existed", async () => {
    const { agents } = await as("tenant-b", role, subject);
    const create = (toolId: string) =>
      agents.createAgent({ agent: { name: `b-with-a-tool-${role}`, role: "b", agentType: AgentType.WEBHOOK, toolIds: [toolId] } });
    const foreign = await errorOf(create(aTool.id));
    const never = await errorOf(create(NEVER_TOOL));
    expect(foreign.code).toBe(Code.PermissionDenied);
    expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CROSS_TENANT_TOOL");
    expect(observable(foreign, aTool.id)).toEqual(observable(never, NEVER_TOOL));
    expect((await agents.listAgents({ namePrefix: "b-with-a-tool" })).agents).toEqual([]);
  });
});

describe("tenant B", () => {
  it("as editor is refused PurgeAgent on A's agent by role, as for an id that never existed", async () => {
    const { agents } = await as("tenant-b", "editor", "b-user");
    const foreign = await errorOf(agents.purgeAgent({ agentId: aDeleted.id }));
    const never = await errorOf(agents.purgeAgent({ agentId: NEVER }));
    expect(foreign.code).toBe(Code.PermissionDenied);
    expect(observable(foreign, aDeleted.id)).toEqual(observable(never, NEVER));
  });

  it("may use a name A's agent has, since names are unique per tenant", async () => {
    const { agents } = await as("tenant-b", "editor", "b-user");
    const { agent } = await agents.createAgent({ agent: { name: aAgent.name, role: "b", agentType: AgentType.WEBHOOK } });
    expect(agent?.id).not.toBe(aAgent.id);
    await agents.deleteAgent({ agentId: agent!.id });
    await (await as("tenant-b", "admin", "b-admin")).agents.purgeAgent({ agentId: agent!.id });
  });

  it("cannot continue A's listings with A's page tokens", async () => {
    const a = (await as("tenant-a", "admin", "a-admin")).agents;
    const b = (await as("tenant-b", "admin", "b-admin")).agents;
    const agentsPage = await a.listAgents({ pageSize: 1, showDeleted: true });
    expect(agentsPage.nextPageToken).not.toBe("");
    expect((await errorOf(b.listAgents({ pageSize: 1, showDeleted: true, pageToken: agentsPage.nextPageToken }))).code).toBe(
      Code.InvalidArgument,
    );
    const templatesPage = await a.listAgentTemplates({ pageSize: 3 });
    expect(templatesPage.nextPageToken).not.toBe("");
    expect((await errorOf(b.listAgentTemplates({ pageSize: 3, pageToken: templatesPage.nextPageToken }))).code).toBe(
      Code.InvalidArgument,
    );
  });
});

describe("tenant A afterwards", () => {
  it("finds its agents, versions, tool and template exactly as before", async () => {
    expect(await snapshotOfA()).toEqual(before);
    expect(before.agents[0]?.toolIds).toEqual([aTool.id]);
    expect(before.agents[0]?.credentialIds).toEqual([aCredential.id]);
    expect((before.versions[0] as unknown[]).length).toBe(2);
    expect(before.listed).toHaveLength(3);
  });
});
