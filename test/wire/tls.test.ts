import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { bearer } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let s: TestServer;
let dir: string;
let ca: Buffer;
let token: string;
let baseUrl: string;

beforeAll(async () => {
  // A self-signed certificate for 127.0.0.1, made for this run.
  dir = mkdtempSync(join(tmpdir(), "ap-tls-"));
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
    "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
  ], { stdio: "ignore" });
  ca = readFileSync(join(dir, "cert.pem"));
  s = await startTestServer({ TLS_CERT_FILE: join(dir, "cert.pem"), TLS_KEY_FILE: join(dir, "key.pem") });
  baseUrl = `https://127.0.0.1:${s.port}`;
  token = await s.token("tls-tenant");
});
afterAll(async () => {
  await s?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("with TLS_CERT_FILE and TLS_KEY_FILE", () => {
  it("serves gRPC over HTTP/2 with TLS on the one port", async () => {
    const transport = createGrpcTransport({ baseUrl, nodeOptions: { ca }, interceptors: [bearer(token)] });
    const { tool } = await createClient(ToolService, transport).createTool({ tool: { name: "over-tls", description: "d" } });
    expect(tool?.name).toBe("over-tls");
    const health = await createClient(Health, transport).check({});
    expect(health.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("serves the Connect protocol over HTTP/1.1 with TLS on the same port (ALPN)", async () => {
    const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca }, interceptors: [bearer(token)] });
    const { tools } = await createClient(ToolService, transport).listTools({});
    expect(tools.map((t) => t.name)).toContain("over-tls");
  });

  it("refuses a client that does not trust the certificate", async () => {
    const transport = createGrpcTransport({ baseUrl });
    await expect(createClient(Health, transport).check({})).rejects.toThrow();
  });
});
