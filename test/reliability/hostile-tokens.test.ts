import { createHmac } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { serverOver, type FaultServer } from "../support/faults.ts";
import { closeRawAgents, connectCall, envelope, grpcSession } from "../support/raw-wire.ts";
import { startTestServer, TEST_SECRET, type TestServer } from "../support/server.ts";

/*
 * Token attacks test/auth/tokens.test.ts does not cover: key-selection
 * headers (kid, jku, x5u, jwk) turned against the verifier, a `crit`
 * extension nobody understands, and tokens or headers of absurd size. The
 * verifier picks keys from its configuration only, never from the token,
 * and oversized input is refused cleanly without taking the server down.
 */

const secret = new TextEncoder().encode(TEST_SECRET);
const now = () => Math.floor(Date.now() / 1000);
const claims = (tenant: string): JWTPayload => ({ sub: "attacker", tenant_id: tenant, roles: ["admin"], iat: now(), exp: now() + 600 });
const b64url = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** A compact HS256 JWS over `header` and `payload` with `key`, signed by hand (jose refuses some of these headers). */
function hmacToken(header: Record<string, unknown>, payload: JWTPayload, key: Uint8Array | string): string {
  const input = `${b64url({ alg: "HS256", typ: "JWT", ...header })}.${b64url(payload)}`;
  return `${input}.${createHmac("sha256", key).update(input).digest("base64url")}`;
}

let s: TestServer;
let jwksServer: FaultServer;
let published: http.Server;
let attacker: http.Server;
let attackerUrl: string;
let attackerRequests = 0;
let attackerKey: CryptoKey;
let attackerJwk: JWK;

const listen = async (server: http.Server) => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  s = await startTestServer();
  // The JWKS the service trusts, and one an attacker controls.
  const trusted = await generateKeyPair("RS256");
  const trustedJwk = { ...(await exportJWK(trusted.publicKey)), kid: "trusted", alg: "RS256", use: "sig" };
  published = http.createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [trustedJwk] })));
  const publishedUrl = await listen(published);
  const pair = await generateKeyPair("RS256");
  attackerKey = pair.privateKey;
  attackerJwk = { ...(await exportJWK(pair.publicKey)), kid: "trusted", alg: "RS256", use: "sig" };
  attacker = http.createServer((_req, res) => {
    attackerRequests++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [attackerJwk] }));
  });
  attackerUrl = await listen(attacker);
  jwksServer = await serverOver(s.orm, { JWT_JWKS_URL: `${publishedUrl}/jwks.json` });
});
afterAll(async () => {
  closeRawAgents();
  await jwksServer?.close();
  await s?.close();
  for (const server of [published, attacker]) await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
});

async function expectUnauthenticated(url: string, token: string): Promise<void> {
  const err = await errorOf(clientOf(ToolService, connectJson(url, token)).listTools({}));
  expect(Code[err.code], err.rawMessage).toBe(Code[Code.Unauthenticated]);
}

describe("key-selection headers", () => {
  it.each([
    { label: "a path to /dev/null", kid: "../../../../../../dev/null" },
    { label: "/dev/null", kid: "/dev/null" },
    { label: "SQL", kid: "' OR 1=1 --" },
    { label: "4000 characters", kid: "x".repeat(4000) },
    { label: "a URL", kid: "http://127.0.0.1:1/key" },
  ])(
    "refuses an HS256 token whose kid is $label, signed with an empty or guessable key",
    async ({ kid }) => {
      for (const key of ["", "null", kid, "0"]) await expectUnauthenticated(s.url, hmacToken({ kid }, claims("victim"), key));
    },
  );

  it("ignores kid when the shared secret verifies: the signature alone decides", async () => {
    const genuine = hmacToken({ kid: "' OR 1=1 --" }, claims("kid-ok"), secret);
    const { tools } = await clientOf(ToolService, connectJson(s.url, genuine)).listTools({});
    expect(tools).toEqual([]);
  });

  it("never fetches keys from a jku or x5u header, nor trusts a jwk embedded in the token", async () => {
    const forge = (header: Record<string, unknown>) =>
      new SignJWT(claims("victim")).setProtectedHeader({ alg: "RS256", typ: "JWT", kid: "trusted", ...header }).sign(attackerKey);
    for (const header of [
      { jku: `${attackerUrl}/jwks.json` },
      { x5u: `${attackerUrl}/cert.pem` },
      { jwk: { kty: attackerJwk.kty, n: attackerJwk.n, e: attackerJwk.e } },
    ]) {
      const token = await forge(header);
      await expectUnauthenticated(jwksServer.url, token);
      await expectUnauthenticated(s.url, token);
    }
    expect(attackerRequests).toBe(0);
  });

  it("refuses a genuinely signed token that marks an unknown header extension critical", async () => {
    await expectUnauthenticated(s.url, hmacToken({ crit: ["x-bind"], "x-bind": "anything" }, claims("crit"), secret));
  });

  it("refuses a kid the JWKS does not publish, however it is shaped, and keeps serving", async () => {
    for (const kid of ["../../etc/passwd", "' OR 1=1 --", "{\"$ne\":null}", "k".repeat(5000)]) {
      const token = await new SignJWT(claims("victim")).setProtectedHeader({ alg: "RS256", kid }).sign(attackerKey);
      await expectUnauthenticated(jwksServer.url, token);
    }
  });
});

describe("tokens and headers of absurd size", () => {
  it("verifies a genuine token for the right tenant even with an 11 KiB JOSE header, in bounded time", async () => {
    // 8 KiB of header parameters: 11 KiB in base64url, under Node's 16 KiB header limit.
    const token = hmacToken({ pad: "p".repeat(8 * 1024) }, claims("huge-header"), secret);
    const started = Date.now();
    const { tools } = await clientOf(ToolService, connectJson(s.url, token)).listTools({});
    expect(tools).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("refuses an authorization header past the HTTP limit cleanly, over HTTP/1.1 and HTTP/2, and keeps serving", async () => {
    const token = hmacToken({ pad: "p".repeat(120 * 1024) }, claims("huge-header"), secret);
    const h1 = await connectCall(s.url, "/agentplatform.v1.ToolService/ListTools", "{}", {
      contentType: "application/json",
      headers: { authorization: `Bearer ${token}` },
    });
    // Node's HTTP/1.1 parser refuses headers over 16 KiB with 431 (or closes the connection).
    expect([0, 431]).toContain(h1.http);

    const h2 = grpcSession(s.url);
    try {
      const answer = await h2.call("/agentplatform.v1.ToolService/ListTools", envelope(new Uint8Array(0)), { authorization: `Bearer ${token}` }).catch(
        (err: Error) => ({ http: 0, code: undefined, message: err.message }),
      );
      // Refused at the HTTP/2 layer (stream reset) or as an RPC: never accepted, never INTERNAL.
      expect([undefined, "unauthenticated", "resource_exhausted"]).toContain(answer.code);
    } finally {
      h2.close();
    }

    const health = await connectCall(s.url, "/grpc.health.v1.Health/Check", "{}", { contentType: "application/json" });
    expect(health).toMatchObject({ http: 200, code: "ok" });
    const { tools } = await clientOf(ToolService, connectJson(s.url, hmacToken({}, claims("after"), secret))).listTools({});
    expect(tools).toEqual([]);
  });
});
