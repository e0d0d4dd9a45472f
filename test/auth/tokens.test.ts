import { randomBytes } from "node:crypto";
import { Agent, createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { createAppServer } from "../../src/server.ts";
import { Code, errorOf } from "../support/clients.ts";
import { startTestServer, TEST_SECRET, type TestServer } from "../support/server.ts";

/*
 * Token verification end to end: every case goes through a real server over
 * the Connect protocol (JSON, HTTP/1.1) and asserts the exact gRPC code.
 *
 * On PostgreSQL every database of this file has the same per-worker name
 * (test/support/db.ts), so no two test servers may be alive at once: the
 * servers with another token configuration (issuer/audience, JWKS) share the
 * main server's ORM instead (startSibling), and the server whose database is
 * closed starts only after the main one has stopped.
 */

const secretBytes = new TextEncoder().encode(TEST_SECRET);
const now = () => Math.floor(Date.now() / 1000);

// No keep-alive: an idle pooled connection would hold up each server's shutdown.
const agent = new Agent({ keepAlive: false });

/** Connect protocol, JSON, HTTP/1.1, sending exactly these headers (or none). */
function withHeaders(baseUrl: string, headers: Record<string, string>): Transport {
  const set: Interceptor = (next) => (req) => {
    for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
    return next(req);
  };
  return createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    useBinaryFormat: false,
    interceptors: [set],
    nodeOptions: { agent },
  });
}

function toolsWith(baseUrl: string, headers: Record<string, string>) {
  return createClient(ToolService, withHeaders(baseUrl, headers));
}

function toolsAs(baseUrl: string, token: string, tenant?: string) {
  return toolsWith(baseUrl, { authorization: `Bearer ${token}`, ...(tenant ? { "x-tenant-id": tenant } : {}) });
}

/** The claims of a well-formed token; `overrides` replace or (with undefined) remove claims. */
function claims(overrides: Record<string, unknown> = {}): JWTPayload {
  const base: Record<string, unknown> = {
    sub: "test-user",
    tenant_id: "tok",
    roles: ["editor"],
    iat: now(),
    exp: now() + 600,
    ...overrides,
  };
  for (const [key, value] of Object.entries(base)) if (value === undefined) delete base[key];
  return base as JWTPayload;
}

/** Signs `payload` with HS256 (by default with the server's secret). */
function hs256(payload: JWTPayload, key: Uint8Array = secretBytes, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: "HS256", typ: "JWT", ...header }).sign(key);
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/** An unsecured JWT: header {"alg":"none"}, the payload, and an empty signature. */
function unsecured(payload: JWTPayload): string {
  return `${b64url({ alg: "none", typ: "JWT" })}.${b64url(payload)}.`;
}

/** A second server with its own token configuration over the main server's ORM and database. */
async function startSibling(main: TestServer, env: Record<string, string>): Promise<{ url: string; close(): Promise<void> }> {
  // As startTestServer does; CREDENTIAL_KEYS keeps a server from writing a
  // development key under ./data (ignored by a tree without credentials).
  const config = loadConfig({
    JWT_SECRET: TEST_SECRET,
    HOST: "127.0.0.1",
    PORT: "0",
    CREDENTIAL_KEYS: `sibling-1:${randomBytes(32).toString("base64")}`,
    ...env,
  });
  const server = createAppServer({ config, orm: main.orm, logger: createLogger("error", () => {}) });
  const port = await server.listen(0, "127.0.0.1");
  server.health.setServing(true);
  return { url: `http://127.0.0.1:${port}`, close: () => server.shutdown() };
}

async function expectCode(call: Promise<unknown>, code: Code): Promise<void> {
  const err = await errorOf(call);
  expect(Code[err.code], err.rawMessage).toBe(Code[code]);
}

// The main server: tokens checked with TEST_SECRET. Stopped before the
// describe at the end of the file starts its own.
let s: TestServer;
describe("with the shared secret", () => {
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s?.close());

  describe("bearer tokens against the shared secret", () => {
    it("answers UNAUTHENTICATED when no authorization header is sent", async () => {
      await expectCode(toolsWith(s.url, {}).listTools({}), Code.Unauthenticated);
      await expectCode(toolsWith(s.url, {}).createTool({ tool: { name: "no-header", description: "d" } }), Code.Unauthenticated);
    });

    it("answers UNAUTHENTICATED for a scheme other than Bearer, even carrying a valid token", async () => {
      const valid = await s.token("tok");
      await expectCode(toolsWith(s.url, { authorization: `Basic ${valid}` }).listTools({}), Code.Unauthenticated);
      await expectCode(toolsWith(s.url, { authorization: `Token ${valid}` }).listTools({}), Code.Unauthenticated);
      await expectCode(toolsWith(s.url, { authorization: valid }).listTools({}), Code.Unauthenticated);
      await expectCode(toolsWith(s.url, { authorization: "Bearer" }).listTools({}), Code.Unauthenticated);
      await expectCode(toolsWith(s.url, { authorization: `Bearer ${valid} ${valid}` }).listTools({}), Code.Unauthenticated);
    });

    it("answers UNAUTHENTICATED for a token that is not a JWT", async () => {
      for (const garbage of ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.", "...", "%%%"]) {
        await expectCode(toolsAs(s.url, garbage).listTools({}), Code.Unauthenticated);
      }
    });

    it("accepts a well-formed token (control for the refusals below)", async () => {
      await expect(toolsAs(s.url, await hs256(claims())).listTools({})).resolves.toBeDefined();
    });

    it('refuses an unsecured token (alg "none")', async () => {
      await expectCode(toolsAs(s.url, unsecured(claims())).listTools({}), Code.Unauthenticated);
      await expectCode(
        toolsAs(s.url, unsecured(claims({ roles: ["admin"] }))).createTool({ tool: { name: "none-alg", description: "d" } }),
        Code.Unauthenticated,
      );
    });

    it("refuses a token whose header says alg none but which carries the real HS256 signature", async () => {
      const real = await hs256(claims());
      const [, payload, signature] = real.split(".");
      await expectCode(toolsAs(s.url, `${b64url({ alg: "none" })}.${payload}.${signature}`).listTools({}), Code.Unauthenticated);
    });

    it("refuses a token signed with another secret", async () => {
      const other = new TextEncoder().encode("another-secret-0123456789abcdef0123456789abcdef");
      await expectCode(toolsAs(s.url, await hs256(claims(), other)).listTools({}), Code.Unauthenticated);
    });

    it("refuses a token whose payload was changed after signing", async () => {
      const [header, , signature] = (await hs256(claims({ roles: ["viewer"] }))).split(".");
      const forged = `${header}.${b64url(claims({ roles: ["admin"] }))}.${signature}`;
      await expectCode(toolsAs(s.url, forged).listTools({}), Code.Unauthenticated);
    });

    it("refuses an RS256 token when only the shared secret is configured", async () => {
      const { privateKey } = await generateKeyPair("RS256");
      const rs = await new SignJWT(claims()).setProtectedHeader({ alg: "RS256" }).sign(privateKey);
      await expectCode(toolsAs(s.url, rs).listTools({}), Code.Unauthenticated);
    });

    it("refuses a token that expired beyond the 30 s clock tolerance", async () => {
      const expired = await hs256(claims({ iat: now() - 600, exp: now() - 120 }));
      await expectCode(toolsAs(s.url, expired).listTools({}), Code.Unauthenticated);
    });

    it("still accepts a token that expired within the clock tolerance", async () => {
      const justExpired = await hs256(claims({ iat: now() - 600, exp: now() - 5 }));
      await expect(toolsAs(s.url, justExpired).listTools({})).resolves.toBeDefined();
    });

    it("refuses a token that is not valid yet (nbf in the future)", async () => {
      await expectCode(toolsAs(s.url, await hs256(claims({ nbf: now() + 600 }))).listTools({}), Code.Unauthenticated);
    });

    it("refuses a token without exp", async () => {
      await expectCode(toolsAs(s.url, await hs256(claims({ exp: undefined }))).listTools({}), Code.Unauthenticated);
    });

    it("refuses a token without a subject, or with an empty or non-string one", async () => {
      for (const sub of [undefined, "", 42]) {
        await expectCode(toolsAs(s.url, await hs256(claims({ sub }))).listTools({}), Code.Unauthenticated);
      }
    });

    it("refuses a token whose tenant claim is missing or not a valid tenant id", async () => {
      const bad: Record<string, unknown>[] = [
        { tenant_id: undefined },
        { tenant_id: "a b" },
        { tenant_id: "x".repeat(200) },
        { tenant_id: "" },
        { tenant_id: "../other" },
        { tenant_id: 42 },
        { tenant_id: undefined, tenant_ids: [] },
        { tenant_id: undefined, tenant_ids: ["ok", "a b"] },
        { tenant_id: undefined, tenant_ids: ["ok", 7] },
        { tenant_id: undefined, tenant_ids: "ok" },
      ];
      for (const overrides of bad) {
        const token = await hs256(claims(overrides));
        const err = await errorOf(toolsAs(s.url, token).listTools({}));
        expect(Code[err.code], JSON.stringify(overrides)).toBe(Code[Code.Unauthenticated]);
      }
    });

    it("never echoes the token in the answer or in the server log", async () => {
      const refused = [
        await hs256(claims({ exp: now() - 3600 })),
        await hs256(claims(), new TextEncoder().encode("wrong-secret-wrong-secret-wrong-secret")),
        await hs256(claims({ tenant_id: "a b" })),
        await hs256(claims({ sub: undefined })),
        unsecured(claims()),
        "not-a-jwt-but-a-secret-looking-string",
      ];
      for (const token of refused) {
        const secrets = [token, ...token.split(".").filter((part) => part.length > 8)];

        const err = await errorOf(toolsAs(s.url, token).listTools({}));
        expect(err.code).toBe(Code.Unauthenticated);
        const info = err.findDetails(ErrorInfoSchema);
        const visible = [err.rawMessage, JSON.stringify(info), JSON.stringify([...err.metadata.entries()])].join("\n");

        // The raw HTTP answer too, headers and body as sent.
        const res = await fetch(`${s.url}/agentplatform.v1.ToolService/ListTools`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: "{}",
        });
        expect(res.status).toBe(401);
        const wire = `${JSON.stringify([...res.headers.entries()])}\n${await res.text()}`;

        for (const secret of secrets) {
          expect(visible).not.toContain(secret);
          expect(wire).not.toContain(secret);
          expect(s.logs.join("\n")).not.toContain(secret);
        }
      }
    });
  });

  describe("tenant selection", () => {
    it("acts in the tenant x-tenant-id picks from a multi-tenant token", async () => {
      const both = await s.token(["mt-a", "mt-b"]);
      const { tool } = await toolsAs(s.url, both, "mt-b").createTool({ tool: { name: "picked-b", description: "d" } });

      const onlyB = toolsAs(s.url, await s.token("mt-b"));
      const onlyA = toolsAs(s.url, await s.token("mt-a"));
      expect((await onlyB.getTool({ toolId: tool!.id })).tool?.name).toBe("picked-b");
      expect((await onlyB.listTools({})).tools.map((t) => t.name)).toEqual(["picked-b"]);
      expect((await errorOf(onlyA.getTool({ toolId: tool!.id }))).code).toBe(Code.NotFound);
      expect((await onlyA.listTools({})).tools).toEqual([]);
      // And the multi-tenant token sees it only while acting in b.
      expect((await toolsAs(s.url, both, "mt-a").listTools({})).tools).toEqual([]);
      expect((await toolsAs(s.url, both, "mt-b").listTools({})).tools.map((t) => t.id)).toEqual([tool!.id]);
    });

    it("answers PERMISSION_DENIED (TENANT_REQUIRED) for a multi-tenant token without x-tenant-id", async () => {
      const both = await s.token(["mt-a", "mt-b"]);
      for (const client of [toolsAs(s.url, both), toolsAs(s.url, both, "")]) {
        const err = await errorOf(client.listTools({}));
        expect(err.code).toBe(Code.PermissionDenied);
        expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("TENANT_REQUIRED");
      }
    });

    it("answers PERMISSION_DENIED (TENANT_NOT_GRANTED) for a tenant the multi-tenant token does not name", async () => {
      const both = await s.token(["mt-a", "mt-b"]);
      const err = await errorOf(toolsAs(s.url, both, "mt-c").createTool({ tool: { name: "in-c", description: "d" } }));
      expect(err.code).toBe(Code.PermissionDenied);
      expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("TENANT_NOT_GRANTED");
      expect((await toolsAs(s.url, await s.token("mt-c")).listTools({})).tools).toEqual([]);
    });

    it("answers PERMISSION_DENIED when a single-tenant token asks for another tenant", async () => {
      const onlyA = await s.token("mt-a");
      const err = await errorOf(toolsAs(s.url, onlyA, "mt-b").listTools({}));
      expect(err.code).toBe(Code.PermissionDenied);
      expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("TENANT_NOT_GRANTED");
      // Naming its own tenant is fine.
      await expect(toolsAs(s.url, onlyA, "mt-a").listTools({})).resolves.toBeDefined();
    });
  });

  describe("issuer and audience", () => {
    const issuer = "https://issuer.test/";
    const audience = "agent-platform";
    let alt: { url: string; close(): Promise<void> };
    beforeAll(async () => {
      alt = await startSibling(s, { JWT_ISSUER: issuer, JWT_AUDIENCE: audience });
    });
    afterAll(() => alt?.close());

    const mint = (iss: string | undefined, aud: string | undefined) =>
      mintToken(secretBytes, { tenants: ["iss"], roles: ["editor"], subject: "u", ttl: "10m", issuer: iss, audience: aud });

    it("accepts a token with the configured issuer and audience", async () => {
      await expect(toolsAs(alt.url, await mint(issuer, audience)).listTools({})).resolves.toBeDefined();
      await expect(
        toolsAs(alt.url, await hs256(claims({ iss: issuer, aud: ["other", audience] }))).listTools({}),
      ).resolves.toBeDefined();
    });

    it("refuses a token from another issuer, or without one", async () => {
      await expectCode(toolsAs(alt.url, await mint("https://evil.test/", audience)).listTools({}), Code.Unauthenticated);
      await expectCode(toolsAs(alt.url, await mint(undefined, audience)).listTools({}), Code.Unauthenticated);
    });

    it("refuses a token for another audience, or without one", async () => {
      await expectCode(toolsAs(alt.url, await mint(issuer, "another-service")).listTools({}), Code.Unauthenticated);
      await expectCode(toolsAs(alt.url, await mint(issuer, undefined)).listTools({}), Code.Unauthenticated);
    });
  });

  describe("keys from a JWKS URL", () => {
    let jwks: Server;
    let alt: { url: string; close(): Promise<void> };
    let privateKey: CryptoKey;
    let publicJwk: JWK;
    let publicPem: string;
    let jwksRequests = 0;
    const kid = "test-key-1";

    beforeAll(async () => {
      const pair = await generateKeyPair("RS256");
      privateKey = pair.privateKey;
      publicJwk = { ...(await exportJWK(pair.publicKey)), kid, alg: "RS256", use: "sig" };
      publicPem = await exportSPKI(pair.publicKey);
      jwks = createServer((req, res) => {
        jwksRequests++;
        if (req.url !== "/.well-known/jwks.json") {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [publicJwk] }));
      });
      await new Promise<void>((resolve) => jwks.listen(0, "127.0.0.1", resolve));
      const { port } = jwks.address() as AddressInfo;
      alt = await startSibling(s, { JWT_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json` });
    });
    afterAll(async () => {
      await alt?.close();
      await new Promise((resolve) => (jwks ? jwks.close(resolve) : resolve(undefined)));
    });

    const rs256 = (payload: JWTPayload, keyId: string | undefined = kid, key: CryptoKey = privateKey) =>
      new SignJWT(payload).setProtectedHeader({ alg: "RS256", typ: "JWT", ...(keyId ? { kid: keyId } : {}) }).sign(key);

    it("accepts an RS256 token signed with the published key", async () => {
      const { tool } = await toolsAs(alt.url, await rs256(claims({ tenant_id: "jwks" }))).createTool({
        tool: { name: "rs256", description: "d" },
      });
      expect(tool?.name).toBe("rs256");
      expect(jwksRequests).toBeGreaterThan(0);
    });

    it("refuses an HS256 token whose HMAC secret is the public key (PEM or JWK JSON)", async () => {
      for (const keyText of [publicPem, JSON.stringify(publicJwk), publicJwk.n!]) {
        const confused = await hs256(claims({ tenant_id: "jwks" }), new TextEncoder().encode(keyText), { kid });
        await expectCode(toolsAs(alt.url, confused).listTools({}), Code.Unauthenticated);
      }
    });

    it("refuses an HS256 token signed with the shared secret once a JWKS is configured", async () => {
      await expectCode(toolsAs(alt.url, await s.token("jwks")).listTools({}), Code.Unauthenticated);
    });

    it("refuses a token whose kid the JWKS does not publish", async () => {
      await expectCode(toolsAs(alt.url, await rs256(claims({ tenant_id: "jwks" }), "unknown-kid")).listTools({}), Code.Unauthenticated);
    });

    it("refuses an RS256 token signed with another key under the published kid", async () => {
      const other = await generateKeyPair("RS256");
      const token = await rs256(claims({ tenant_id: "jwks" }), kid, other.privateKey);
      await expectCode(toolsAs(alt.url, token).listTools({}), Code.Unauthenticated);
    });

    it('refuses an unsecured (alg "none") token', async () => {
      await expectCode(toolsAs(alt.url, unsecured(claims({ tenant_id: "jwks" }))).listTools({}), Code.Unauthenticated);
    });
  });
});

describe("authentication before any database work", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
    await toolsAs(s.url, await s.token("nodb")).createTool({ tool: { name: "before-close", description: "d" } });
    await s.orm.close();
    // MikroORM reconnects on demand after close(): on PGlite that opens a new,
    // empty in-memory database (no tables); on PostgreSQL it would reach the
    // same database again, so drop it to make any query fail there as well.
    const adminUrl = process.env.TEST_DATABASE_URL;
    if (adminUrl && s.db.config.url) {
      const name = new URL(s.db.config.url).pathname.slice(1);
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        await admin.query(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end();
      }
    }
  });
  afterAll(() => s?.close());

  it("answers UNAUTHENTICATED for a call without a token while the database is closed", async () => {
    await expectCode(toolsWith(s.url, {}).listTools({}), Code.Unauthenticated);
    await expectCode(toolsWith(s.url, {}).createTool({ tool: { name: "x", description: "d" } }), Code.Unauthenticated);
  });

  it("answers UNAUTHENTICATED for a bad token while the database is closed", async () => {
    await expectCode(toolsAs(s.url, unsecured(claims({ tenant_id: "nodb" }))).listTools({}), Code.Unauthenticated);
    await expectCode(toolsAs(s.url, await hs256(claims({ exp: now() - 600 }))).listTools({}), Code.Unauthenticated);
  });

  it("answers PERMISSION_DENIED for a missing role or tenant while the database is closed", async () => {
    const viewer = await s.token("nodb", ["viewer"]);
    await expectCode(toolsAs(s.url, viewer).createTool({ tool: { name: "x", description: "d" } }), Code.PermissionDenied);
    await expectCode(toolsAs(s.url, viewer, "other").listTools({}), Code.PermissionDenied);
  });

  it("does fail an authorized call, so the database really is unusable (control)", async () => {
    const err = await errorOf(toolsAs(s.url, await s.token("nodb")).listTools({}));
    expect([Code.Internal, Code.Unavailable]).toContain(err.code);
  });
});
