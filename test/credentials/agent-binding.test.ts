import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType, AgentVisibility } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { sql } from "./support.ts";

/*
 * AgentService.BindCredentials / UnbindCredentials and credential_ids on
 * CreateAgent: editors bind their tenant's credentials; an id that does not
 * exist and another tenant's id get the same PERMISSION_DENIED.
 */

const A = "link-a";
const B = "link-b";

let s: TestServer;
let agentsA: ReturnType<typeof clientOf<typeof AgentService>>;
let viewerA: ReturnType<typeof clientOf<typeof AgentService>>;
let credsA: ReturnType<typeof clientOf<typeof CredentialService>>;
let credsB: ReturnType<typeof clientOf<typeof CredentialService>>;

async function credential(client: typeof credsA, name: string): Promise<string> {
  const { credential } = await client.createCredential({
    credential: { name, type: CredentialType.BEARER_TOKEN },
    secret: { value: { case: "bearerToken", value: { token: `t-${name}` } } },
  });
  return credential!.id;
}

async function agent(name: string, credentialIds: string[] = []) {
  const { agent } = await agentsA.createAgent({ agent: { name, role: "r", agentType: AgentType.WEBHOOK, credentialIds } });
  return agent!;
}

beforeAll(async () => {
  s = await startTestServer();
  agentsA = clientOf(AgentService, connectJson(s.url, await s.token(A, ["editor"])));
  viewerA = clientOf(AgentService, connectJson(s.url, await s.token(A, ["viewer"])));
  credsA = clientOf(CredentialService, connectJson(s.url, await s.token(A, ["admin"])));
  credsB = clientOf(CredentialService, connectJson(s.url, await s.token(B, ["admin"])));
});
afterAll(() => s?.close());

describe("CreateAgent with credential_ids", () => {
  it("binds the tenant's credentials", async () => {
    const c1 = await credential(credsA, "create-c1");
    const c2 = await credential(credsA, "create-c2");
    const created = await agent("with-creds", [c2, c1]);
    expect(created.credentialIds).toEqual([c1, c2].sort());
    expect((await agentsA.getAgent({ agentId: created.id })).agent?.credentialIds).toEqual([c1, c2].sort());
  });

  it("refuses a missing and a foreign id alike, and creates nothing", async () => {
    const foreign = await credential(credsB, "create-foreign");
    const missing = randomUUID();
    for (const id of [foreign, missing]) {
      const err = await errorOf(agentsA.createAgent({ agent: { name: "refused", role: "r", agentType: AgentType.WEBHOOK, credentialIds: [id] } }));
      expect(err.code).toBe(Code.PermissionDenied);
      const info = err.findDetails(ErrorInfoSchema)[0];
      expect(info?.reason).toBe("CROSS_TENANT_CREDENTIAL");
      expect(info?.metadata.credential_ids).toBe(id);
      expect(err.rawMessage).toBe("credentials must belong to the caller's tenant");
    }
    expect((await agentsA.listAgents({ namePrefix: "refused" })).agents).toEqual([]);
  });
});

describe("BindCredentials / UnbindCredentials", () => {
  it("binds idempotently and changes the agent's etag", async () => {
    const c1 = await credential(credsA, "bind-c1");
    const c2 = await credential(credsA, "bind-c2");
    const a = await agent("binder");
    const { agent: once } = await agentsA.bindCredentials({ agentId: a.id, credentialIds: [c1] });
    expect(once?.credentialIds).toEqual([c1]);
    expect(once?.etag).not.toBe(a.etag);
    const { agent: twice } = await agentsA.bindCredentials({ agentId: a.id, credentialIds: [c1, c2] });
    expect(twice?.credentialIds).toEqual([c1, c2].sort());
  });

  it("unbinds idempotently", async () => {
    const c1 = await credential(credsA, "unbind-c1");
    const c2 = await credential(credsA, "unbind-c2");
    const a = await agent("unbinder", [c1, c2]);
    expect((await agentsA.unbindCredentials({ agentId: a.id, credentialIds: [c1] })).agent?.credentialIds).toEqual([c2]);
    expect((await agentsA.unbindCredentials({ agentId: a.id, credentialIds: [c1] })).agent?.credentialIds).toEqual([c2]);
  });

  it("answers a foreign and a missing credential id with the same PERMISSION_DENIED, binding nothing", async () => {
    const own = await credential(credsA, "mixed-own");
    const foreign = await credential(credsB, "mixed-foreign");
    const missing = randomUUID();
    const a = await agent("mixed");
    const answers = [];
    for (const id of [foreign, missing]) {
      const err = await errorOf(agentsA.bindCredentials({ agentId: a.id, credentialIds: [own, id] }));
      expect(err.code).toBe(Code.PermissionDenied);
      const info = err.findDetails(ErrorInfoSchema)[0];
      expect(info?.reason).toBe("CROSS_TENANT_CREDENTIAL");
      expect(info?.metadata.credential_ids).toBe(id);
      answers.push({ code: err.code, message: err.rawMessage, keys: Object.keys(info?.metadata ?? {}) });
      const unbind = await errorOf(agentsA.unbindCredentials({ agentId: a.id, credentialIds: [id] }));
      expect(unbind.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CROSS_TENANT_CREDENTIAL");
    }
    expect(answers[0]).toEqual(answers[1]);
    expect((await agentsA.getAgent({ agentId: a.id })).agent?.credentialIds).toEqual([]);
    expect(await sql(s.orm, "select * from agent_credentials where credential_id = ?", [foreign])).toEqual([]);
  });

  it("answers NOT_FOUND for an agent of another tenant", async () => {
    const agentsB = clientOf(AgentService, connectJson(s.url, await s.token(B, ["editor"])));
    const { agent: bAgent } = await agentsB.createAgent({ agent: { name: "b-agent", role: "r", agentType: AgentType.WEBHOOK } });
    const own = await credential(credsA, "for-b-agent");
    const err = await errorOf(agentsA.bindCredentials({ agentId: bAgent!.id, credentialIds: [own] }));
    expect(err.code).toBe(Code.NotFound);
  });

  it("is refused to a viewer", async () => {
    const a = await agent("viewer-bind");
    const c = await credential(credsA, "viewer-bind-c");
    expect((await errorOf(viewerA.bindCredentials({ agentId: a.id, credentialIds: [c] }))).code).toBe(Code.PermissionDenied);
  });

  it("lists every agent's credential ids in one page", async () => {
    const c = await credential(credsA, "listed-c");
    await agent("listed-1", [c]);
    await agent("listed-2");
    const { agents } = await agentsA.listAgents({ namePrefix: "listed-" });
    expect(agents.map((a) => [a.name, a.credentialIds])).toEqual(
      expect.arrayContaining([
        ["listed-1", [c]],
        ["listed-2", []],
      ]),
    );
  });

  it("drops the links when the agent is purged, freeing the credential for deletion", async () => {
    const adminAgents = clientOf(AgentService, connectJson(s.url, await s.token(A, ["admin"])));
    const c = await credential(credsA, "purged-c");
    const a = await agent("purged", [c]);
    expect((await errorOf(credsA.deleteCredential({ credentialId: c }))).code).toBe(Code.FailedPrecondition);
    await adminAgents.deleteAgent({ agentId: a.id });
    await adminAgents.purgeAgent({ agentId: a.id });
    await credsA.deleteCredential({ credentialId: c });
  });

  it("keeps binding a private agent to its creator and the tenant's admins", async () => {
    const other = clientOf(AgentService, connectJson(s.url, await s.token(A, ["editor"], "someone-else")));
    const { agent: mine } = await agentsA.createAgent({
      agent: { name: "private-binder", role: "r", agentType: AgentType.WEBHOOK, visibility: AgentVisibility.PRIVATE },
    });
    const c = await credential(credsA, "private-c");
    expect((await errorOf(other.bindCredentials({ agentId: mine!.id, credentialIds: [c] }))).code).toBe(Code.NotFound);
    expect((await agentsA.bindCredentials({ agentId: mine!.id, credentialIds: [c] })).agent?.credentialIds).toEqual([c]);
  });
});
