import { randomBytes, randomUUID } from "node:crypto";
import { toJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { clientOf, connectJson, errorOf, grpc } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { rejectionOf, resolveAs, sql } from "./support.ts";

/*
 * A canary secret goes in through every way a secret can; then everything
 * observable is searched for it: every response, every error (message,
 * details, metadata), every log line, and the database rows.
 */

const TENANT = "leak-acme";
// Unique per run; the hint shows its last 4 characters, never more.
const CANARY = `canary-${randomBytes(12).toString("hex")}`;
const ROTATED = `canary-rotated-${randomBytes(12).toString("hex")}`;

/** The canary in every encoding a careless serialiser might produce. */
function encodings(secret: string): string[] {
  const b = Buffer.from(secret);
  // The middle of the value, so a hint of the last 4 characters cannot match.
  const core = secret.slice(0, -4);
  return [secret, core, b.toString("base64"), b.toString("base64url"), b.toString("hex"), Buffer.from(core).toString("base64")];
}

let s: TestServer;
const seen: string[] = [];

function observeResponse<Desc extends DescMessage>(desc: Desc, message: MessageShape<Desc>): MessageShape<Desc> {
  seen.push(toJsonString(desc, message));
  return message;
}

function observeError(err: ConnectError): ConnectError {
  seen.push(
    JSON.stringify({
      message: err.rawMessage,
      details: err.details.map((d) => Buffer.from((d as { value: Uint8Array }).value).toString("latin1")),
      metadata: [...err.metadata.entries()],
    }),
  );
  return err;
}

beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s?.close());

describe("a secret written to the service", () => {
  it("never appears in a response, an error, a log line or a database row", async () => {
    const transport = connectJson(s.url, await s.token(TENANT, ["admin"]));
    const admin = clientOf(CredentialService, transport);
    const binary = clientOf(CredentialService, grpc(s.url, await s.token(TENANT, ["admin"])));
    const agents = clientOf(AgentService, transport);
    const secret = { value: { case: "apiKey" as const, value: { apiKey: CANARY, headerName: "X-Canary" } } };
    const M = CredentialService.method;

    const created = observeResponse(
      M.createCredential.output,
      await admin.createCredential({ credential: { name: "canary", type: CredentialType.API_KEY }, secret, requestId: randomUUID() }),
    );
    const id = created.credential!.id;
    const basic = observeResponse(
      M.createCredential.output,
      await binary.createCredential({
        credential: { name: "canary-basic", type: CredentialType.BASIC_AUTH },
        secret: { value: { case: "basicAuth", value: { username: CANARY, password: CANARY } } },
      }),
    );
    observeResponse(
      M.createCredential.output,
      await admin.createCredential({
        credential: { name: "canary-custom", type: CredentialType.CUSTOM },
        secret: { value: { case: "custom", value: { values: { token: CANARY } } } },
      }),
    );
    observeResponse(M.getCredential.output, await admin.getCredential({ credentialId: id }));
    observeResponse(M.listCredentials.output, await admin.listCredentials({}));
    observeResponse(M.listCredentials.output, await binary.listCredentials({ type: CredentialType.BASIC_AUTH }));
    observeResponse(
      M.updateCredential.output,
      await admin.updateCredential({ credentialId: id, credential: { description: "d" }, updateMask: { paths: ["description"] } }),
    );

    // Errors on requests that carry the secret.
    observeError(await errorOf(admin.createCredential({ credential: { name: "canary", type: CredentialType.API_KEY }, secret })));
    observeError(await errorOf(admin.createCredential({ credential: { name: "x", type: CredentialType.BEARER_TOKEN }, secret })));
    observeError(
      await errorOf(
        admin.createCredential({
          credential: { name: "x", type: CredentialType.OAUTH2 },
          secret: { value: { case: "oauth2", value: { clientId: CANARY, clientSecret: CANARY, tokenUrl: `not a url ${CANARY}` } } },
        }),
      ),
    );
    observeError(
      await errorOf(
        admin.createCredential({
          credential: { name: "x", type: CredentialType.API_KEY },
          secret: { value: { case: "apiKey", value: { apiKey: CANARY.repeat(400) } } },
        }),
      ),
    );
    observeError(await errorOf(binary.rotateCredential({ credentialId: id, secret, etag: "W/\"999\"" })));
    observeError(
      await errorOf(admin.rotateCredential({ credentialId: id, secret: { value: { case: "bearerToken", value: { token: CANARY } } } })),
    );
    const editor = clientOf(CredentialService, connectJson(s.url, await s.token(TENANT, ["editor"])));
    observeError(await errorOf(editor.createCredential({ credential: { name: "y", type: CredentialType.API_KEY }, secret })));

    observeResponse(
      M.rotateCredential.output,
      await admin.rotateCredential({ credentialId: id, secret: { value: { case: "apiKey", value: { apiKey: ROTATED } } } }),
    );
    observeResponse(M.rewrapCredentials.output, await admin.rewrapCredentials({}));

    // Use by the platform: the value comes back to the caller and nowhere else.
    expect((await resolveAs(s.orm, TENANT, id)).secret.value.value).toMatchObject({ apiKey: ROTATED });
    await sql(s.orm, "update credentials set payload = set_byte(payload, 20, get_byte(payload, 20) # 1) where id = ?", [basic.credential!.id]);
    seen.push(String(await rejectionOf(resolveAs(s.orm, TENANT, basic.credential!.id))));

    const { agent } = await agents.createAgent({ agent: { name: "canary-agent", role: "r", agentType: AgentType.WEBHOOK, credentialIds: [id] } });
    observeError(await errorOf(admin.deleteCredential({ credentialId: id })));
    observeResponse(M.revokeCredential.output, await admin.revokeCredential({ credentialId: id }));
    observeResponse(M.deleteCredential.output, await admin.deleteCredential({ credentialId: id, force: true }));
    expect(agent?.credentialIds).toEqual([id]);

    // A database failure while a secret is in flight: the error interceptor
    // logs the cause (with the failed SQL and its parameters) server-side.
    await sql(s.orm, "alter table credentials rename column secret_hint to secret_hint_gone");
    try {
      observeError(await errorOf(admin.createCredential({ credential: { name: "canary-fails", type: CredentialType.API_KEY }, secret })));
      observeError(await errorOf(admin.rotateCredential({ credentialId: basic.credential!.id, secret: { value: { case: "basicAuth", value: { username: CANARY, password: CANARY } } } })));
    } finally {
      await sql(s.orm, "alter table credentials rename column secret_hint_gone to secret_hint");
    }
    expect(s.logs.some((l) => l.includes("internal error"))).toBe(true);

    const rows = [...(await sql(s.orm, "select * from credentials")), ...(await sql(s.orm, "select * from idempotency_keys"))];
    const dump = rows.map((r) => JSON.stringify(r, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : v)));

    const haystacks = { responsesAndErrors: seen.join("\n"), logs: s.logs.join("\n"), database: dump.join("\n") };
    expect(seen.length).toBeGreaterThan(15);
    expect(s.logs.length).toBeGreaterThan(0);
    for (const [where, text] of Object.entries(haystacks)) {
      for (const needle of [...encodings(CANARY), ...encodings(ROTATED)]) {
        expect(text.includes(needle), `${where} contains the canary (${needle.slice(0, 12)}…)`).toBe(false);
      }
    }
  });
});
