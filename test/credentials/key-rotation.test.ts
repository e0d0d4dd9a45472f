import { Agent } from "node:http";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import type { FailedPreconditionError } from "../../src/common/errors.ts";
import { loadConfig } from "../../src/config.ts";
import { newKeyEntry, parseKeyring } from "../../src/credentials/keyring.ts";
import { createLogger } from "../../src/log.ts";
import { createAppServer, type AppServer } from "../../src/server.ts";
import { Code, errorOf } from "../support/clients.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { TEST_SECRET } from "../support/server.ts";
import { rejectionOf, resolveAs, sql } from "./support.ts";

/*
 * Key rotation end to end over one database, with the server restarted under
 * each new CREDENTIAL_KEYS as an operator would: write under k1, add k2
 * (primary for new writes), rewrap in batches (and survive an interruption),
 * retire k1, and every credential still decrypts.
 */

const K1 = newKeyEntry("k1");
const K2 = newKeyEntry("k2");
const A = "rot-a";
const B = "rot-b";

// No keep-alive: an idle pooled connection would hold up the server's shutdown.
const httpAgent = new Agent({ keepAlive: false });

let db: TestDatabase;
let running: { server: AppServer; url: string } | undefined;

/** (Re)starts the server over the same database with `keys` as CREDENTIAL_KEYS. */
async function restart(keys: string): Promise<void> {
  await running?.server.shutdown();
  const config = loadConfig({ JWT_SECRET: TEST_SECRET, CREDENTIAL_KEYS: keys });
  const server = createAppServer({ config, orm: db.orm, logger: createLogger("error", () => {}) });
  const port = await server.listen(0, "127.0.0.1");
  server.health.setServing(true);
  running = { server, url: `http://127.0.0.1:${port}` };
}

async function adminOf(tenant: string): Promise<Client<typeof CredentialService>> {
  const token = await mintToken(new TextEncoder().encode(TEST_SECRET), { tenants: [tenant], roles: ["admin"], subject: "ops", ttl: "10m" });
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(
    CredentialService,
    createConnectTransport({ baseUrl: running!.url, httpVersion: "1.1", interceptors: [bearer], nodeOptions: { agent: httpAgent } }),
  );
}

async function create(tenant: string, name: string): Promise<string> {
  const { credential } = await (await adminOf(tenant)).createCredential({
    credential: { name, type: CredentialType.BEARER_TOKEN },
    secret: { value: { case: "bearerToken", value: { token: `token-of-${tenant}-${name}` } } },
  });
  return credential!.id;
}

async function expectDecrypts(keys: string, tenant: string, id: string, name: string): Promise<void> {
  const resolved = await resolveAs(db.orm, tenant, id, parseKeyring(keys));
  expect(resolved.secret.value.value).toMatchObject({ token: `token-of-${tenant}-${name}` });
}

const keyIdsOf = async (tenant: string) =>
  (await sql<{ key_id: string }>(db.orm, "select key_id from credentials where tenant_id = ? order by name", [tenant])).map((r) => r.key_id);

const written: { tenant: string; name: string; id: string }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await running?.server.shutdown();
  await db?.close();
});

describe("key rotation", () => {
  it("writes under k1 while k1 is the only key", async () => {
    await restart(K1);
    for (const name of ["a1", "a2", "a3", "a4", "a5"]) written.push({ tenant: A, name, id: await create(A, name) });
    for (const name of ["b1", "b2"]) written.push({ tenant: B, name, id: await create(B, name) });
    expect(await keyIdsOf(A)).toEqual(["k1", "k1", "k1", "k1", "k1"]);
  });

  it("makes an added k2 primary for new writes and rotations, while k1 rows keep decrypting", async () => {
    await restart(`${K1},${K2}`);
    written.push({ tenant: A, name: "a6", id: await create(A, "a6") });
    const admin = await adminOf(A);
    const { credential } = await admin.getCredential({ credentialId: written.find((w) => w.name === "a6")!.id });
    expect(credential?.keyId).toBe("k2");
    expect((await admin.getCredential({ credentialId: written[0]!.id })).credential?.keyId).toBe("k1");
    for (const w of written) await expectDecrypts(`${K1},${K2}`, w.tenant, w.id, w.name);
  });

  it("rewraps in batches, reporting progress, and resumes after a restart half-way", async () => {
    const first = await (await adminOf(A)).rewrapCredentials({ batchSize: 1 });
    expect(first).toMatchObject({ rewrapped: 1, remaining: 4, primaryKeyId: "k2", underRetiredKeys: 0 });
    const second = await (await adminOf(A)).rewrapCredentials({ batchSize: 2 });
    expect(second).toMatchObject({ rewrapped: 2, remaining: 2 });

    // The "crash": the server goes away mid-way; the rows are half old, half new.
    await restart(`${K1},${K2}`);
    for (const w of written) await expectDecrypts(`${K1},${K2}`, w.tenant, w.id, w.name);
    const resumed = await (await adminOf(A)).rewrapCredentials({ batchSize: 100 });
    expect(resumed).toMatchObject({ rewrapped: 2, remaining: 0 });
    expect(await keyIdsOf(A)).toEqual(["k2", "k2", "k2", "k2", "k2", "k2"]);

    // Idempotent: another run finds nothing to do.
    expect(await (await adminOf(A)).rewrapCredentials({})).toMatchObject({ rewrapped: 0, remaining: 0 });
  });

  it("rewraps only the caller's tenant", async () => {
    expect(await keyIdsOf(B)).toEqual(["k1", "k1"]);
    expect(await (await adminOf(B)).rewrapCredentials({})).toMatchObject({ rewrapped: 2, remaining: 0 });
    expect(await keyIdsOf(B)).toEqual(["k2", "k2"]);
  });

  it("bumps the etag of a rewrapped credential and keeps its secret version", async () => {
    const { credential } = await (await adminOf(A)).getCredential({ credentialId: written[0]!.id });
    expect(credential?.secretVersion).toBe(1);
    expect(credential?.etag).not.toBe('W/"1"');
  });

  it("decrypts everything with k1 retired", async () => {
    await restart(K2);
    for (const w of written) await expectDecrypts(K2, w.tenant, w.id, w.name);
    expect(await (await adminOf(A)).rewrapCredentials({})).toMatchObject({ rewrapped: 0, remaining: 0, underRetiredKeys: 0 });
  });

  it("answers a clean FAILED_PRECONDITION for a row whose key was retired before it was rewrapped", async () => {
    await restart(`${K1},${K2}`);
    await restart(K1); // a row written while k1 was primary again…
    const stranded = await create("rot-c", "c1");
    await restart(K2); // …and k1 retired without a rewrap of rot-c
    const err = await rejectionOf(resolveAs(db.orm, "rot-c", stranded, parseKeyring(K2)));
    expect((err as FailedPreconditionError).reason).toBe("CREDENTIAL_KEY_UNAVAILABLE");
    const admin = await adminOf("rot-c");
    expect((await admin.getCredential({ credentialId: stranded })).credential?.keyId).toBe("k1");
    expect(await admin.rewrapCredentials({})).toMatchObject({ rewrapped: 0, remaining: 0, underRetiredKeys: 1 });

    // Rotation needs no old plaintext, so it rescues the row under the primary key.
    const { credential } = await admin.rotateCredential({
      credentialId: stranded,
      secret: { value: { case: "bearerToken", value: { token: "token-of-rot-c-c1" } } },
    });
    expect(credential?.keyId).toBe("k2");
    await expectDecrypts(K2, "rot-c", stranded, "c1");
  });

  it("stops a rewrap at a damaged row with FAILED_PRECONDITION, having kept the rows before it", async () => {
    await restart(K2);
    const ids = [await create("rot-d", "d1"), await create("rot-d", "d2"), await create("rot-d", "d3")].sort();
    await sql(db.orm, "update credentials set payload = set_byte(payload, 14, get_byte(payload, 14) # 1) where id = ?", [ids[1]]);
    const K3 = newKeyEntry("k3");
    await restart(`${K2},${K3}`);
    const err = await errorOf((await adminOf("rot-d")).rewrapCredentials({}));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CREDENTIAL_UNREADABLE");
    const keys = await sql<{ id: string; key_id: string }>(db.orm, "select id, key_id from credentials where tenant_id = 'rot-d' order by id");
    expect(keys.map((k) => k.key_id)).toEqual(["k3", "k2", "k2"]);
  });
});
