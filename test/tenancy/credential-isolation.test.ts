import { randomUUID } from "node:crypto";
import { Agent } from "node:http";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType, type Credential as CredentialMessage } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Role } from "../../src/auth/principal.ts";
import { Credential } from "../../src/credentials/credential.entity.ts";
import { Code, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { observable } from "../support/observable.ts";
import { emFor, resolveAs } from "../credentials/support.ts";

/*
 * Tenant B, as editor and as admin, calls every CredentialService RPC (and
 * the AgentService bindings) against tenant A's credentials: it must neither
 * see, change, use nor learn of them; a foreign id answers exactly like an id
 * that never existed.
 */

const A = "cred-iso-a";
const B = "cred-iso-b";

let s: TestServer;
let credsA: Client<typeof CredentialService>;
let aCreds: CredentialMessage[];
const bIds: string[] = [];

// No keep-alive: an idle pooled connection would hold up the server's shutdown.
const httpAgent = new Agent({ keepAlive: false });

function as<S extends typeof CredentialService | typeof AgentService>(service: S, token: string): Client<S> {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(
    service,
    createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", useBinaryFormat: false, interceptors: [bearer], nodeOptions: { agent: httpAgent } }),
  );
}

const bearerSecret = (token: string) => ({ value: { case: "bearerToken" as const, value: { token } } });

beforeAll(async () => {
  s = await startTestServer();
  credsA = as(CredentialService, await s.token(A, ["admin"]));
  aCreds = [];
  for (const name of ["alpha", "beta", "gamma", "delta", "epsilon"]) {
    const { credential } = await credsA.createCredential({ credential: { name, type: CredentialType.BEARER_TOKEN }, secret: bearerSecret(`a-${name}`) });
    aCreds.push(credential!);
  }
});
afterAll(() => s?.close());

describe.each(["editor", "admin"] as Role[])("tenant B as %s", (role) => {
  let credsB: Client<typeof CredentialService>;
  let agentsB: Client<typeof AgentService>;
  beforeAll(async () => {
    credsB = as(CredentialService, await s.token(B, [role], `b-${role}`));
    agentsB = as(AgentService, await s.token(B, [role], `b-${role}`));
  });

  /** B's answer for A's credential next to its answer for an id that never existed. */
  async function expectSameAsUnknown(call: (id: string) => Promise<unknown>, foreignId: string, code = Code.NotFound): Promise<void> {
    const unknownId = randomUUID();
    const foreign = await errorOf(call(foreignId));
    const never = await errorOf(call(unknownId));
    expect(Code[foreign.code]).toBe(Code[code]);
    expect(observable(foreign, foreignId)).toEqual(observable(never, unknownId));
  }

  it("gets NOT_FOUND for A's credential, exactly as for an id that never existed", async () => {
    for (const c of aCreds) await expectSameAsUnknown((id) => credsB.getCredential({ credentialId: id }), c.id);
  });

  it("lists none of A's credentials, whatever the filters", async () => {
    const aIds = new Set(aCreds.map((c) => c.id));
    for (const type of [CredentialType.UNSPECIFIED, CredentialType.BEARER_TOKEN]) {
      let pageToken = "";
      do {
        const page = await credsB.listCredentials({ type, pageSize: 1, pageToken });
        for (const c of page.credentials) expect(aIds.has(c.id)).toBe(false);
        pageToken = page.nextPageToken;
      } while (pageToken);
    }
  });

  it("refuses A's page token", async () => {
    const { nextPageToken } = await credsA.listCredentials({ pageSize: 1 });
    expect((await errorOf(credsB.listCredentials({ pageSize: 1, pageToken: nextPageToken }))).code).toBe(Code.InvalidArgument);
  });

  // Admin-only RPCs: an editor is refused before any lookup, for A's ids and
  // unknown ids alike; an admin of B gets NOT_FOUND for both.
  const writeCode = role === "admin" ? Code.NotFound : Code.PermissionDenied;

  it("cannot update, rotate, revoke or delete A's credential", async () => {
    const c = aCreds[0]!;
    await expectSameAsUnknown(
      (id) => credsB.updateCredential({ credentialId: id, credential: { name: "hijacked" }, updateMask: { paths: ["name"] }, etag: c.etag }),
      c.id,
      writeCode,
    );
    await expectSameAsUnknown((id) => credsB.rotateCredential({ credentialId: id, secret: bearerSecret("b-owned"), etag: c.etag }), c.id, writeCode);
    await expectSameAsUnknown((id) => credsB.rotateCredential({ credentialId: id, secret: bearerSecret("b-owned") }), c.id, writeCode);
    await expectSameAsUnknown((id) => credsB.revokeCredential({ credentialId: id }), c.id, writeCode);
    await expectSameAsUnknown((id) => credsB.deleteCredential({ credentialId: id }), c.id, writeCode);
    await expectSameAsUnknown((id) => credsB.deleteCredential({ credentialId: id, force: true }), c.id, writeCode);
  });

  it("cannot bind A's credential to its own agent: the same CROSS_TENANT_CREDENTIAL as an unknown id", async () => {
    const { agent } = await agentsB.createAgent({ agent: { name: `b-agent-${role}`, role: "r", agentType: AgentType.WEBHOOK } });
    const c = aCreds[1]!;
    const bind = (id: string) => agentsB.bindCredentials({ agentId: agent!.id, credentialIds: [id] });
    const unknownId = randomUUID();
    const foreign = await errorOf(bind(c.id));
    const never = await errorOf(bind(unknownId));
    expect(foreign.code).toBe(Code.PermissionDenied);
    expect(foreign.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CROSS_TENANT_CREDENTIAL");
    expect(foreign.findDetails(ErrorInfoSchema)[0]?.metadata.credential_ids).toBe(c.id);
    expect(observable(foreign, c.id)).toEqual(observable(never, unknownId));
    const create = await errorOf(
      agentsB.createAgent({ agent: { name: `b-agent-2-${role}`, role: "r", agentType: AgentType.WEBHOOK, credentialIds: [c.id] } }),
    );
    expect(create.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CROSS_TENANT_CREDENTIAL");
  });

  it("cannot have the platform use A's credential", async () => {
    await expect(resolveAs(s.orm, B, aCreds[2]!.id)).rejects.toMatchObject({ reason: "CREDENTIAL_NOT_FOUND" });
  });

  it("creates a credential with a name A uses (names are unique per tenant only)", async () => {
    if (role !== "admin") return;
    const { credential } = await credsB.createCredential({ credential: { name: "alpha", type: CredentialType.BEARER_TOKEN }, secret: bearerSecret("b-alpha") });
    bIds.push(credential!.id);
    expect(credential?.id).not.toBe(aCreds[0]!.id);
  });

  it("rewraps only its own credentials", async () => {
    if (role !== "admin") {
      expect((await errorOf(credsB.rewrapCredentials({}))).code).toBe(Code.PermissionDenied);
      return;
    }
    expect(await credsB.rewrapCredentials({})).toMatchObject({ rewrapped: 0, remaining: 0 });
  });
});

describe("after tenant B's calls", () => {
  it("A's credentials are unchanged, etags included, and still decrypt to A's secrets", async () => {
    for (const c of aCreds) {
      const { credential } = await credsA.getCredential({ credentialId: c.id });
      expect({ ...credential, lastUsedTime: undefined }).toEqual({ ...c, lastUsedTime: undefined });
      expect((await resolveAs(s.orm, A, c.id)).secret.value.value).toMatchObject({ token: `a-${c.name}` });
    }
  });

  it("nothing of B is in A at the database level", async () => {
    const em = emFor(s.orm, A);
    const rows = await em.find(Credential, {});
    expect(rows.map((r) => r.id).sort()).toEqual(aCreds.map((c) => c.id).sort());
    expect(rows.every((r) => r.tenantId === A)).toBe(true);
    expect(await em.count(Credential, { id: { $in: bIds } })).toBe(0);
  });
});
