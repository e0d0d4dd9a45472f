import { createHash, randomUUID } from "node:crypto";
import { timestampFromDate, timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { CredentialSchema, CredentialState, CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CreateCredentialRequestSchema, CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema, PreconditionFailureSchema } from "../../gen/google/rpc/error_details_pb.js";
import { DomainError, FailedPreconditionError } from "../../src/common/errors.ts";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { rejectionOf, resolveAs, sql } from "./support.ts";

const TENANT = "cred-acme";

let s: TestServer;
let admin: ReturnType<typeof clientOf<typeof CredentialService>>;
let editor: ReturnType<typeof clientOf<typeof CredentialService>>;
let viewer: ReturnType<typeof clientOf<typeof CredentialService>>;
let agents: ReturnType<typeof clientOf<typeof AgentService>>;

beforeAll(async () => {
  s = await startTestServer();
  admin = clientOf(CredentialService, connectJson(s.url, await s.token(TENANT, ["admin"], "alice")));
  editor = clientOf(CredentialService, connectJson(s.url, await s.token(TENANT, ["editor"])));
  viewer = clientOf(CredentialService, connectJson(s.url, await s.token(TENANT, ["viewer"])));
  agents = clientOf(AgentService, connectJson(s.url, await s.token(TENANT, ["editor"])));
});
afterAll(() => s?.close());

const apiKey = (key: string) => ({ value: { case: "apiKey" as const, value: { apiKey: key, headerName: "" } } });
const LONG_KEY = "sk-live-0123456789abcdefWXYZ";

async function createApiKey(name: string, key = LONG_KEY, extra: { expireTime?: Date } = {}) {
  const { credential } = await admin.createCredential({
    credential: {
      name,
      type: CredentialType.API_KEY,
      description: "d",
      expireTime: extra.expireTime ? timestampFromDate(extra.expireTime) : undefined,
    },
    secret: apiKey(key),
  });
  return credential!;
}

function reasonOf(err: Error): string | undefined {
  return err instanceof DomainError ? err.reason : undefined;
}

describe("CreateCredential", () => {
  it("stores a credential and returns metadata with a masked hint, never the secret", async () => {
    const credential = await createApiKey("create-1");
    expect(credential.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(credential.type).toBe(CredentialType.API_KEY);
    expect(credential.state).toBe(CredentialState.ACTIVE);
    expect(credential.secretHint).toBe("••••WXYZ");
    expect(credential.keyId).toBe("test-1");
    expect(credential.secretVersion).toBe(1);
    expect(credential.creator).toBe("alice");
    expect(credential.etag).not.toBe("");
    expect(toJsonString(CredentialSchema, credential)).not.toContain(LONG_KEY);
    const { credential: read } = await viewer.getCredential({ credentialId: credential.id });
    expect(read).toEqual(credential);
  });

  it("takes every type with its own payload, and the platform gets that payload back", async () => {
    const cases = [
      { type: CredentialType.OAUTH2, secret: { case: "oauth2" as const, value: { clientId: "cid", clientSecret: "client-secret-value-1234", tokenUrl: "https://auth.example.com/token", scopes: ["a", "b"], refreshToken: "rt", accessToken: "" } } },
      { type: CredentialType.WEBHOOK_SECRET, secret: { case: "webhookSecret" as const, value: { secret: "whsec_0123456789abcdef" } } },
      { type: CredentialType.BASIC_AUTH, secret: { case: "basicAuth" as const, value: { username: "bob", password: "short" } } },
      { type: CredentialType.BEARER_TOKEN, secret: { case: "bearerToken" as const, value: { token: "bearer-token-0123456789" } } },
      { type: CredentialType.CUSTOM, secret: { case: "custom" as const, value: { values: { org: "acme", token: "t0k3n" } } } },
    ];
    for (const [i, c] of cases.entries()) {
      const { credential } = await admin.createCredential({ credential: { name: `typed-${i}`, type: c.type }, secret: { value: c.secret } });
      expect(credential?.type).toBe(c.type);
      const resolved = await resolveAs(s.orm, TENANT, credential!.id);
      expect(resolved.type).toBe(c.type);
      expect(resolved.secret.value.case).toBe(c.secret.case);
      expect(resolved.secret.value.value).toMatchObject(c.secret.value);
    }
  });

  it("hints only at long values: a short password or a custom map shows the mask alone", async () => {
    const { credential: basic } = await admin.createCredential({
      credential: { name: "hint-basic", type: CredentialType.BASIC_AUTH },
      secret: { value: { case: "basicAuth", value: { username: "u", password: "hunter2" } } },
    });
    expect(basic?.secretHint).toBe("••••");
    const { credential: custom } = await admin.createCredential({
      credential: { name: "hint-custom", type: CredentialType.CUSTOM },
      secret: { value: { case: "custom", value: { values: { k: "a-very-long-custom-value-0123456789" } } } },
    });
    expect(custom?.secretHint).toBe("••••");
  });

  it("refuses a payload of another type, without echoing it", async () => {
    const err = await errorOf(
      admin.createCredential({ credential: { name: "mismatch", type: CredentialType.BEARER_TOKEN }, secret: apiKey(LONG_KEY) }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["secret"]);
    expect(err.rawMessage).not.toContain(LONG_KEY);
  });

  it("requires a name, a type and a secret", async () => {
    const noName = await errorOf(admin.createCredential({ credential: { type: CredentialType.API_KEY }, secret: apiKey("k") }));
    expect(noName.code).toBe(Code.InvalidArgument);
    const noType = await errorOf(admin.createCredential({ credential: { name: "no-type" }, secret: apiKey("k") }));
    expect(noType.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toContain("credential.type");
    const noSecret = await errorOf(admin.createCredential({ credential: { name: "no-secret", type: CredentialType.API_KEY } }));
    expect(noSecret.code).toBe(Code.InvalidArgument);
    const emptySecret = await errorOf(admin.createCredential({ credential: { name: "empty", type: CredentialType.API_KEY }, secret: {} }));
    expect(emptySecret.code).toBe(Code.InvalidArgument);
  });

  it("rejects a duplicate name with ALREADY_EXISTS", async () => {
    await createApiKey("dup");
    const err = await errorOf(admin.createCredential({ credential: { name: "dup", type: CredentialType.API_KEY }, secret: apiKey("other") }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CREDENTIAL_NAME_TAKEN");
  });

  it("returns the first credential again for a retried request_id", async () => {
    const requestId = randomUUID();
    const call = () =>
      admin.createCredential({ credential: { name: "idem", type: CredentialType.API_KEY }, secret: apiKey(LONG_KEY), requestId });
    const results = [await call(), await call(), await call()];
    const ids = new Set(results.map((r) => r.credential!.id));
    expect(ids.size).toBe(1);
    const { credentials } = await admin.listCredentials({ pageSize: 200 });
    expect(credentials.filter((c) => c.name === "idem")).toHaveLength(1);
  });

  // Concurrent retries wait on the first call's key row, then replay it.
  it("returns the first credential again when retries race", async () => {
    const requestId = randomUUID();
    const call = () =>
      admin.createCredential({ credential: { name: "idem-3", type: CredentialType.API_KEY }, secret: apiKey(LONG_KEY), requestId });
    const results = await Promise.all([call(), call(), call()]);
    expect(new Set(results.map((r) => r.credential!.id)).size).toBe(1);
  });

  it("refuses a request_id reused with another secret, and keeps no plain digest of the secret", async () => {
    const requestId = randomUUID();
    const request = { credential: { name: "idem-2", type: CredentialType.API_KEY }, secret: apiKey("weak"), requestId };
    await admin.createCredential(request);
    const err = await errorOf(admin.createCredential({ ...request, secret: apiKey("other") }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("REQUEST_ID_REUSED");
    const plain = createHash("sha256")
      .update("CreateCredential")
      .update(toBinary(CreateCredentialRequestSchema, create(CreateCredentialRequestSchema, request)))
      .digest("hex");
    const [key] = await sql<{ request_hash: string }>(s.orm, "select request_hash from idempotency_keys where request_id = ?", [requestId]);
    expect(key?.request_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(key?.request_hash).not.toBe(plain);
  });

  it("refuses an editor and a viewer: only admins create", async () => {
    const request = { credential: { name: "by-editor", type: CredentialType.API_KEY }, secret: apiKey("k") };
    expect((await errorOf(editor.createCredential(request))).code).toBe(Code.PermissionDenied);
    expect((await errorOf(viewer.createCredential(request))).code).toBe(Code.PermissionDenied);
  });
});

describe("GetCredential", () => {
  it("answers NOT_FOUND for an id that never existed", async () => {
    const err = await errorOf(viewer.getCredential({ credentialId: randomUUID() }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CREDENTIAL_NOT_FOUND");
  });

  it("shows a credential past its expire_time as EXPIRED", async () => {
    const credential = await createApiKey("expired-get", LONG_KEY, { expireTime: new Date(Date.now() - 60_000) });
    expect(credential.state).toBe(CredentialState.EXPIRED);
    expect((await viewer.getCredential({ credentialId: credential.id })).credential?.state).toBe(CredentialState.EXPIRED);
  });
});

describe("ListCredentials", () => {
  let pager: typeof admin;
  beforeAll(async () => {
    pager = clientOf(CredentialService, connectJson(s.url, await s.token("cred-pager", ["admin"])));
    for (let i = 0; i < 12; i++) {
      await pager.createCredential({
        credential: { name: `c${String(i).padStart(2, "0")}`, type: i % 3 === 0 ? CredentialType.BEARER_TOKEN : CredentialType.API_KEY },
        secret: i % 3 === 0 ? { value: { case: "bearerToken", value: { token: `tok-${i}` } } } : apiKey(`key-${i}`),
      });
    }
    const { credentials } = await pager.listCredentials({ pageSize: 200 });
    const byName = new Map(credentials.map((c) => [c.name, c]));
    await pager.revokeCredential({ credentialId: byName.get("c01")!.id });
    await pager.updateCredential({
      credentialId: byName.get("c02")!.id,
      credential: { expireTime: timestampFromDate(new Date(Date.now() - 1000)) },
      updateMask: { paths: ["expire_time"] },
    });
  });

  it("walks every credential exactly once across pages, in name order", async () => {
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await pager.listCredentials({ pageSize: 5, pageToken });
      expect(page.credentials.length).toBeLessThanOrEqual(5);
      seen.push(...page.credentials.map((c) => c.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => `c${String(i).padStart(2, "0")}`));
  });

  it("filters by type and by state, EXPIRED judged by expire_time", async () => {
    const names = async (req: Parameters<typeof pager.listCredentials>[0]) =>
      (await pager.listCredentials(req)).credentials.map((c) => c.name);
    expect(await names({ type: CredentialType.BEARER_TOKEN })).toEqual(["c00", "c03", "c06", "c09"]);
    expect(await names({ state: CredentialState.REVOKED })).toEqual(["c01"]);
    expect(await names({ state: CredentialState.EXPIRED })).toEqual(["c02"]);
    const active = await names({ state: CredentialState.ACTIVE });
    expect(active).toHaveLength(10);
    expect(active).not.toContain("c01");
    expect(active).not.toContain("c02");
    expect(await names({ state: CredentialState.ACTIVE, type: CredentialType.BEARER_TOKEN, pageSize: 2 })).toEqual(["c00", "c03"]);
  });

  it("rejects a page token from other filters", async () => {
    const { nextPageToken } = await pager.listCredentials({ pageSize: 2 });
    const err = await errorOf(pager.listCredentials({ pageSize: 2, pageToken: nextPageToken, type: CredentialType.API_KEY }));
    expect(err.code).toBe(Code.InvalidArgument);
  });

  it("shows metadata to a viewer", async () => {
    const asViewer = clientOf(CredentialService, connectJson(s.url, await s.token("cred-pager", ["viewer"])));
    const { credentials } = await asViewer.listCredentials({ pageSize: 3 });
    expect(credentials).toHaveLength(3);
    expect(credentials[0]?.secretHint).toMatch(/^••••/);
  });
});

describe("UpdateCredential", () => {
  it("changes only the fields in the mask and bumps the etag, leaving the secret alone", async () => {
    const credential = await createApiKey("upd-1");
    const { credential: updated } = await admin.updateCredential({
      credentialId: credential.id,
      credential: { description: "after", name: "ignored" },
      updateMask: { paths: ["description"] },
      etag: credential.etag,
    });
    expect(updated?.description).toBe("after");
    expect(updated?.name).toBe("upd-1");
    expect(updated?.secretVersion).toBe(1);
    expect(updated?.etag).not.toBe(credential.etag);
    expect((await resolveAs(s.orm, TENANT, credential.id)).secret.value.value).toMatchObject({ apiKey: LONG_KEY });
  });

  it("answers ABORTED for a stale etag", async () => {
    const credential = await createApiKey("upd-2");
    await admin.updateCredential({ credentialId: credential.id, credential: { description: "x" }, updateMask: { paths: ["description"] } });
    const err = await errorOf(
      admin.updateCredential({ credentialId: credential.id, credential: { description: "y" }, updateMask: { paths: ["description"] }, etag: credential.etag }),
    );
    expect(err.code).toBe(Code.Aborted);
  });

  it("refuses immutable fields, an empty name and a taken name", async () => {
    const credential = await createApiKey("upd-3");
    await createApiKey("upd-taken");
    const immutable = await errorOf(
      admin.updateCredential({ credentialId: credential.id, credential: { type: CredentialType.CUSTOM }, updateMask: { paths: ["type"] } }),
    );
    expect(immutable.code).toBe(Code.InvalidArgument);
    const empty = await errorOf(admin.updateCredential({ credentialId: credential.id, credential: { name: "" }, updateMask: { paths: ["name"] } }));
    expect(empty.code).toBe(Code.InvalidArgument);
    const taken = await errorOf(
      admin.updateCredential({ credentialId: credential.id, credential: { name: "upd-taken" }, updateMask: { paths: ["name"] } }),
    );
    expect(taken.code).toBe(Code.AlreadyExists);
  });

  it("sets and clears expire_time", async () => {
    const credential = await createApiKey("upd-4");
    const past = new Date(Date.now() - 5000);
    const { credential: expired } = await admin.updateCredential({
      credentialId: credential.id,
      credential: { expireTime: timestampFromDate(past) },
      updateMask: { paths: ["expire_time"] },
    });
    expect(expired?.state).toBe(CredentialState.EXPIRED);
    expect(timestampDate(expired!.expireTime!).getTime()).toBe(past.getTime());
    const { credential: cleared } = await admin.updateCredential({ credentialId: credential.id, credential: {}, updateMask: { paths: ["expire_time"] } });
    expect(cleared?.state).toBe(CredentialState.ACTIVE);
    expect(cleared?.expireTime).toBeUndefined();
  });

  it("is admin only", async () => {
    const credential = await createApiKey("upd-5");
    const err = await errorOf(editor.updateCredential({ credentialId: credential.id, credential: { description: "x" }, updateMask: { paths: ["description"] } }));
    expect(err.code).toBe(Code.PermissionDenied);
  });
});

describe("RotateCredential", () => {
  it("replaces the secret under a new data key and counts the version", async () => {
    const credential = await createApiKey("rot-1");
    const before = await sql<{ wrapped_key: Buffer }>(s.orm, "select wrapped_key from credentials where id = ?", [credential.id]);
    const { credential: rotated } = await admin.rotateCredential({
      credentialId: credential.id,
      secret: apiKey("sk-live-rotated-value-9876ABCD"),
      etag: credential.etag,
    });
    expect(rotated?.secretVersion).toBe(2);
    expect(rotated?.secretHint).toBe("••••ABCD");
    expect(rotated?.etag).not.toBe(credential.etag);
    const after = await sql<{ wrapped_key: Buffer }>(s.orm, "select wrapped_key from credentials where id = ?", [credential.id]);
    expect(Buffer.compare(after[0]!.wrapped_key, before[0]!.wrapped_key)).not.toBe(0);
    expect((await resolveAs(s.orm, TENANT, credential.id)).secret.value.value).toMatchObject({ apiKey: "sk-live-rotated-value-9876ABCD" });
  });

  it("refuses a payload of another type, a stale etag and an editor", async () => {
    const credential = await createApiKey("rot-2");
    const mismatch = await errorOf(
      admin.rotateCredential({ credentialId: credential.id, secret: { value: { case: "bearerToken", value: { token: "t" } } } }),
    );
    expect(mismatch.code).toBe(Code.InvalidArgument);
    await admin.rotateCredential({ credentialId: credential.id, secret: apiKey("k2") });
    expect((await errorOf(admin.rotateCredential({ credentialId: credential.id, secret: apiKey("k3"), etag: credential.etag }))).code).toBe(
      Code.Aborted,
    );
    expect((await errorOf(editor.rotateCredential({ credentialId: credential.id, secret: apiKey("k4") }))).code).toBe(Code.PermissionDenied);
  });
});

describe("RevokeCredential", () => {
  it("revokes for good: state REVOKED, ciphertext erased, rotation and use refused", async () => {
    const credential = await createApiKey("rev-1");
    const { credential: revoked } = await admin.revokeCredential({ credentialId: credential.id });
    expect(revoked?.state).toBe(CredentialState.REVOKED);
    expect(revoked?.keyId).toBe("");
    const [row] = await sql<{ wrapped_key: unknown; payload: unknown }>(s.orm, "select wrapped_key, payload from credentials where id = ?", [
      credential.id,
    ]);
    expect(row).toEqual({ wrapped_key: null, payload: null });

    const rotate = await errorOf(admin.rotateCredential({ credentialId: credential.id, secret: apiKey("new") }));
    expect(rotate.code).toBe(Code.FailedPrecondition);
    expect(rotate.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CREDENTIAL_REVOKED");

    const use = await rejectionOf(resolveAs(s.orm, TENANT, credential.id));
    expect(use).toBeInstanceOf(FailedPreconditionError);
    expect(reasonOf(use)).toBe("CREDENTIAL_REVOKED");
  });

  it("is idempotent: revoking twice answers the same and changes nothing", async () => {
    const credential = await createApiKey("rev-2");
    const { credential: first } = await admin.revokeCredential({ credentialId: credential.id });
    const { credential: second } = await admin.revokeCredential({ credentialId: credential.id });
    expect(second).toEqual(first);
  });

  it("is admin only", async () => {
    const credential = await createApiKey("rev-3");
    expect((await errorOf(editor.revokeCredential({ credentialId: credential.id }))).code).toBe(Code.PermissionDenied);
  });
});

describe("DeleteCredential", () => {
  it("deletes a credential no agent uses", async () => {
    const credential = await createApiKey("del-1");
    await admin.deleteCredential({ credentialId: credential.id });
    expect((await errorOf(viewer.getCredential({ credentialId: credential.id }))).code).toBe(Code.NotFound);
    expect(await sql(s.orm, "select id from credentials where id = ?", [credential.id])).toEqual([]);
  });

  it("is FAILED_PRECONDITION while bound, listing the agents; force unbinds and deletes", async () => {
    const credential = await createApiKey("del-2");
    const { agent } = await agents.createAgent({
      agent: { name: "uses-del-2", role: "r", agentType: AgentType.WEBHOOK, credentialIds: [credential.id] },
    });
    expect(agent?.credentialIds).toEqual([credential.id]);

    const err = await errorOf(admin.deleteCredential({ credentialId: credential.id }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CREDENTIAL_IN_USE");
    expect(err.findDetails(PreconditionFailureSchema)[0]?.violations.map((v) => v.subject)).toEqual([`agents/${agent!.id}`]);
    expect((await viewer.getCredential({ credentialId: credential.id })).credential?.name).toBe("del-2");

    await admin.deleteCredential({ credentialId: credential.id, force: true });
    expect((await errorOf(viewer.getCredential({ credentialId: credential.id }))).code).toBe(Code.NotFound);
    expect((await agents.getAgent({ agentId: agent!.id })).agent?.credentialIds).toEqual([]);
  });

  it("is admin only", async () => {
    const credential = await createApiKey("del-3");
    expect((await errorOf(editor.deleteCredential({ credentialId: credential.id }))).code).toBe(Code.PermissionDenied);
  });
});

describe("resolveCredential", () => {
  it("decrypts for one use and records last_used_time without changing the etag", async () => {
    const credential = await createApiKey("use-1");
    expect(credential.lastUsedTime).toBeUndefined();
    const resolved = await resolveAs(s.orm, TENANT, credential.id);
    expect(resolved).toMatchObject({ id: credential.id, name: "use-1", type: CredentialType.API_KEY });
    expect(resolved.secret.value.value).toMatchObject({ apiKey: LONG_KEY });
    const { credential: read } = await viewer.getCredential({ credentialId: credential.id });
    expect(read?.lastUsedTime).toBeDefined();
    expect(read?.etag).toBe(credential.etag);
  });

  it("refuses an expired credential with FAILED_PRECONDITION", async () => {
    const credential = await createApiKey("use-2", LONG_KEY, { expireTime: new Date(Date.now() - 1000) });
    const err = await rejectionOf(resolveAs(s.orm, TENANT, credential.id));
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect(reasonOf(err)).toBe("CREDENTIAL_EXPIRED");
    expect((await viewer.getCredential({ credentialId: credential.id })).credential?.lastUsedTime).toBeUndefined();
  });

  it("answers NOT_FOUND for another tenant's credential", async () => {
    const credential = await createApiKey("use-3");
    const err = await rejectionOf(resolveAs(s.orm, "cred-other", credential.id));
    expect(reasonOf(err)).toBe("CREDENTIAL_NOT_FOUND");
  });
});

describe("RewrapCredentials", () => {
  it("has nothing to do while only one key is configured", async () => {
    expect(await admin.rewrapCredentials({})).toMatchObject({ rewrapped: 0, remaining: 0, underRetiredKeys: 0, primaryKeyId: "test-1" });
  });

  it("is admin only", async () => {
    expect((await errorOf(editor.rewrapCredentials({}))).code).toBe(Code.PermissionDenied);
  });
});
