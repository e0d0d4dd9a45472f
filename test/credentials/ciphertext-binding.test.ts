import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { FailedPreconditionError } from "../../src/common/errors.ts";
import { clientOf, connectJson } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { rejectionOf, resolveAs, sql } from "./support.ts";

/*
 * Someone with write access to the database (or a restore gone wrong) moves
 * ciphertext around or damages it. Every such row must fail to decrypt with a
 * clean FAILED_PRECONDITION — never yield another row's secret, garbage or an
 * empty secret.
 */

const A = "bind-a";
const B = "bind-b";
const IV = 12;
const TAG = 16;

let s: TestServer;
let aId: string;
let a2Id: string;
let bId: string;

async function create(tenant: string, name: string, key: string): Promise<string> {
  const admin = clientOf(CredentialService, connectJson(s.url, await s.token(tenant, ["admin"])));
  const { credential } = await admin.createCredential({
    credential: { name, type: CredentialType.API_KEY },
    secret: { value: { case: "apiKey", value: { apiKey: key } } },
  });
  return credential!.id;
}

interface Row {
  key_id: string;
  wrapped_key: Buffer;
  payload: Buffer;
}

async function rowOf(id: string): Promise<Row> {
  const [row] = await sql<Row>(s.orm, "select key_id, wrapped_key, payload from credentials where id = ?", [id]);
  return { key_id: row!.key_id, wrapped_key: Buffer.from(row!.wrapped_key), payload: Buffer.from(row!.payload) };
}

async function write(id: string, row: Row): Promise<void> {
  await sql(s.orm, "update credentials set key_id = ?, wrapped_key = ?, payload = ? where id = ?", [row.key_id, row.wrapped_key, row.payload, id]);
}

function flip(box: Buffer, at: number): Buffer {
  const copy = Buffer.from(box);
  copy[at]! ^= 0x01;
  return copy;
}

async function expectUnreadable(tenant: string, id: string): Promise<void> {
  const err = await rejectionOf(resolveAs(s.orm, tenant, id));
  expect(err).toBeInstanceOf(FailedPreconditionError);
  expect((err as FailedPreconditionError).reason).toBe("CREDENTIAL_UNREADABLE");
}

let originalA: Row;

beforeAll(async () => {
  s = await startTestServer();
  aId = await create(A, "a-key", "secret-of-tenant-a");
  a2Id = await create(A, "a-key-2", "another-secret-of-a");
  bId = await create(B, "b-key", "secret-of-tenant-b");
  originalA = await rowOf(aId);
});
afterAll(() => s?.close());

beforeEach(async () => {
  await write(aId, originalA);
});

describe("ciphertext bound to tenant and record", () => {
  it("decrypts an untouched row", async () => {
    expect((await resolveAs(s.orm, A, aId)).secret.value.value).toMatchObject({ apiKey: "secret-of-tenant-a" });
  });

  it("refuses tenant B's ciphertext copied into tenant A's credential", async () => {
    await sql(
      s.orm,
      `update credentials set key_id = src.key_id, wrapped_key = src.wrapped_key, payload = src.payload
         from credentials src where src.id = ? and credentials.id = ?`,
      [bId, aId],
    );
    await expectUnreadable(A, aId);
  });

  it("refuses another credential's ciphertext of the same tenant", async () => {
    await write(aId, await rowOf(a2Id));
    await expectUnreadable(A, aId);
  });

  it("refuses a row whose payload is kept but whose data key comes from another row", async () => {
    await write(aId, { ...originalA, wrapped_key: (await rowOf(a2Id)).wrapped_key });
    await expectUnreadable(A, aId);
  });

  it("refuses tenant A's own row when its tenant_id is rewritten to B", async () => {
    const [moved] = await sql<{ id: string }>(s.orm, "select id from credentials where id = ?", [a2Id]);
    await sql(s.orm, "update credentials set tenant_id = ?, name = 'moved' where id = ?", [B, moved!.id]);
    try {
      await expectUnreadable(B, a2Id);
    } finally {
      await sql(s.orm, "update credentials set tenant_id = ?, name = 'a-key-2' where id = ?", [A, a2Id]);
    }
  });

  for (const [part, at] of [
    ["IV", 0],
    ["ciphertext", IV + 2],
    ["tag", -1],
  ] as const) {
    it(`refuses a payload with one bit of its ${part} flipped`, async () => {
      const offset = at < 0 ? originalA.payload.length + at : at;
      await write(aId, { ...originalA, payload: flip(originalA.payload, offset) });
      await expectUnreadable(A, aId);
    });

    it(`refuses a wrapped data key with one bit of its ${part} flipped`, async () => {
      const offset = at < 0 ? originalA.wrapped_key.length + at : at;
      await write(aId, { ...originalA, wrapped_key: flip(originalA.wrapped_key, offset) });
      await expectUnreadable(A, aId);
    });
  }

  it("refuses a truncated payload", async () => {
    await write(aId, { ...originalA, payload: originalA.payload.subarray(0, IV + TAG - 1) });
    await expectUnreadable(A, aId);
  });

  it("refuses a row relabelled with a key id the keyring does not hold, as a retired key", async () => {
    await write(aId, { ...originalA, key_id: "nope" });
    const err = await rejectionOf(resolveAs(s.orm, A, aId));
    expect((err as FailedPreconditionError).reason).toBe("CREDENTIAL_KEY_UNAVAILABLE");
  });

  it("refuses a row whose type was changed behind the service's back", async () => {
    await sql(s.orm, "update credentials set type = 'BEARER_TOKEN' where id = ?", [aId]);
    try {
      await expectUnreadable(A, aId);
    } finally {
      await sql(s.orm, "update credentials set type = 'API_KEY' where id = ?", [aId]);
    }
  });

  it("still decrypts after the damage is undone: nothing was overwritten on failure", async () => {
    expect((await resolveAs(s.orm, A, aId)).secret.value.value).toMatchObject({ apiKey: "secret-of-tenant-a" });
    expect((await resolveAs(s.orm, B, bId)).secret.value.value).toMatchObject({ apiKey: "secret-of-tenant-b" });
  });
});

describe("the stored row", () => {
  it("holds neither the secret nor the data key in the clear", async () => {
    const rows = await sql(s.orm, "select * from credentials where id = ?", [bId]);
    const text = JSON.stringify(rows, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : v));
    expect(text).not.toContain("secret-of-tenant-b");
    expect(text).toContain('"key_id":"test-1"');
  });

  it("refuses, by constraint, an active row without ciphertext", async () => {
    await expect(sql(s.orm, "update credentials set payload = null where id = ?", [bId])).rejects.toThrow();
  });
});
