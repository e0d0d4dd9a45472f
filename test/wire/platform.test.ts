// What the server does around the RPCs themselves: health, methods it does
// not serve, CORS for browsers, message size limits and client deadlines.
import { create, createFileRegistry } from "@bufbuild/protobuf";
import { EmptySchema, FileDescriptorProtoSchema, file_google_protobuf_empty } from "@bufbuild/protobuf/wkt";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { bearer, clientOf, Code, connectJson, errorOf, grpc, grpcWeb } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ORIGIN = "https://app.example";

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ CORS_ORIGINS: ORIGIN });
});
afterAll(() => s?.close());

const protocols: { protocol: string; transport: (url: string, token?: string) => Transport }[] = [
  { protocol: "gRPC", transport: grpc },
  { protocol: "gRPC-Web", transport: grpcWeb },
  { protocol: "Connect", transport: connectJson },
];

describe("grpc.health.v1.Health over gRPC (HTTP/2), without a token", () => {
  const health = () => clientOf(Health, grpc(s.url));

  it("reports the server as SERVING", async () => {
    expect((await health().check({ service: "" })).status).toBe(Status.SERVING);
  });

  it("reports a served service as SERVING", async () => {
    expect((await health().check({ service: "agentplatform.v1.ToolService" })).status).toBe(Status.SERVING);
  });

  it("answers NOT_FOUND for a service it does not serve", async () => {
    const err = await errorOf(health().check({ service: "agentplatform.v1.NoSuchService" }));
    expect(err.code).toBe(Code.NotFound);
  });

  it("lists the server and every served service", async () => {
    const { statuses } = await health().list({});
    for (const name of ["", "agentplatform.v1.ToolService", "agentplatform.v1.AgentService", "grpc.health.v1.Health"]) {
      expect(statuses[name]?.status, name).toBe(Status.SERVING);
    }
  });

  it("streams SERVING first, then NOT_SERVING when the server stops serving", async () => {
    const stop = new AbortController();
    const stream = health().watch({ service: "" }, { signal: stop.signal })[Symbol.asyncIterator]();
    try {
      expect((await stream.next()).value?.status).toBe(Status.SERVING);
      s.server.health.setServing(false);
      expect((await stream.next()).value?.status).toBe(Status.NOT_SERVING);
      s.server.health.setServing(true);
      expect((await stream.next()).value?.status).toBe(Status.SERVING);
    } finally {
      s.server.health.setServing(true);
      stop.abort();
    }
  });

  it("streams SERVICE_UNKNOWN for a service it does not serve", async () => {
    const stop = new AbortController();
    const stream = health().watch({ service: "agentplatform.v1.NoSuchService" }, { signal: stop.signal });
    try {
      for await (const response of stream) {
        expect(response.status).toBe(Status.SERVICE_UNKNOWN);
        break;
      }
    } finally {
      stop.abort();
    }
  });
});

describe("methods the server does not serve", () => {
  // A method ToolService does not have: the router has no route for it.
  const ghost = createFileRegistry(
    create(FileDescriptorProtoSchema, {
      name: "test/ghost.proto",
      package: "agentplatform.v1",
      dependency: ["google/protobuf/empty.proto"],
      syntax: "proto3",
      service: [{ name: "ToolService", method: [{ name: "PurgeTools", inputType: ".google.protobuf.Empty", outputType: ".google.protobuf.Empty" }] }],
    }),
    (name) => (name === "google/protobuf/empty.proto" ? file_google_protobuf_empty : undefined),
  ).getService("agentplatform.v1.ToolService")!;

  it.each(protocols)("answer UNIMPLEMENTED over $protocol, even with a valid token", async ({ transport }) => {
    const client = clientOf(ghost, transport(s.url, await s.token("platform", ["admin"])));
    const { purgeTools } = client as unknown as Record<string, (req: object) => Promise<unknown>>;
    const err = await errorOf(purgeTools!(create(EmptySchema)));
    expect(err.code).toBe(Code.Unimplemented);
  });
});

describe("CORS for an allowed browser origin", () => {
  it("answers a preflight with 204 and the allowed methods and headers", async () => {
    const res = await fetch(`${s.url}/agentplatform.v1.ToolService/CreateTool`, {
      method: "OPTIONS",
      headers: {
        origin: ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, connect-protocol-version",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(list(res.headers.get("access-control-allow-methods"))).toEqual(expect.arrayContaining(["post", "get"]));
    expect(list(res.headers.get("access-control-allow-headers"))).toEqual(
      expect.arrayContaining([
        "authorization",
        "x-tenant-id",
        "content-type",
        "connect-protocol-version",
        "x-grpc-web",
        "grpc-timeout",
        // A compressed unary Connect call, and gRPC's message type header.
        "content-encoding",
        "accept-encoding",
        "grpc-message-type",
      ]),
    );
  });

  it("lets the browser read the status headers of a call", async () => {
    const res = await fetch(`${s.url}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { origin: ORIGIN, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "SERVING" });
    expect(res.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(list(res.headers.get("access-control-expose-headers"))).toEqual(
      expect.arrayContaining(["grpc-status", "grpc-message", "grpc-status-details-bin"]),
    );
  });

  it("gives another origin's preflight no Access-Control-Allow-Origin", async () => {
    const res = await fetch(`${s.url}/agentplatform.v1.ToolService/CreateTool`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(res.status).not.toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    expect(res.headers.get("access-control-allow-headers")).toBeNull();
  });
});

describe("message size limit", () => {
  // The server answers before the upload ends. Node's keep-alive agent then
  // hands that half-written socket to connect-node's next HTTP/1.1 call, which
  // stalls for the keep-alive timeout and fails with ECONNRESET (a client-side
  // quirk; raw sockets and fetch see the connection drained correctly), so the
  // Connect case uses connections of its own.
  const sizeProtocols = protocols.map((p) =>
    p.protocol !== "Connect"
      ? p
      : {
          ...p,
          transport: (url: string, token?: string) =>
            createConnectTransport({
              baseUrl: url,
              httpVersion: "1.1",
              interceptors: token ? [bearer(token)] : [],
              nodeOptions: { agent: new http.Agent({ keepAlive: false }) },
            }),
        },
  );

  it.each(sizeProtocols)("refuses a 5 MiB request over $protocol with RESOURCE_EXHAUSTED", async ({ transport }) => {
    const tools = clientOf(ToolService, transport(s.url, await s.token("platform-size")));
    const err = await errorOf(tools.createTool({ tool: { name: "huge", description: "x".repeat(5 * 1024 * 1024) } }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect((await tools.listTools({})).tools).toEqual([]);
  });
});

describe("client deadlines", () => {
  it("refuse a deadline longer than MAX_TIMEOUT_MS (5 minutes) with INVALID_ARGUMENT", async () => {
    const tools = clientOf(ToolService, connectJson(s.url, await s.token("platform-deadline")));
    const err = await errorOf(tools.listTools({}, { timeoutMs: 5 * 60_000 + 1 }));
    expect(err.code).toBe(Code.InvalidArgument);
  });

  it("end a server stream that would otherwise stay open once the connect-timeout-ms header runs out", async () => {
    const started = Date.now();
    const frames = await watchWithTimeoutHeader(300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(frames[0]).toEqual({ flags: 0, json: { status: "SERVING" } });
    expect(frames.at(-1)?.flags).toBe(2);
  });

  // Watch rethrows the abort reason, so a stream cut by the deadline does
  // not end with OK.
  it("end such a stream with DEADLINE_EXCEEDED", async () => {
    const frames = await watchWithTimeoutHeader(300);
    expect(frames.at(-1)).toMatchObject({ flags: 2, json: { error: { code: "deadline_exceeded" } } });
  });
});

/**
 * Calls Health.Watch with the Connect streaming protocol by hand, so the only
 * deadline is the one the server reads from the header; returns every frame.
 */
async function watchWithTimeoutHeader(timeoutMs: number): Promise<{ flags: number; json: unknown }[]> {
  const body = Buffer.from(JSON.stringify({ service: "" }));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.length, 1);
  const res = await fetch(`${s.url}/grpc.health.v1.Health/Watch`, {
    method: "POST",
    headers: {
      "content-type": "application/connect+json",
      "connect-protocol-version": "1",
      "connect-timeout-ms": String(timeoutMs),
    },
    body: Buffer.concat([prefix, body]),
    signal: AbortSignal.timeout(10_000),
  });
  expect(res.status).toBe(200);
  const bytes = Buffer.from(await res.arrayBuffer());
  const frames: { flags: number; json: unknown }[] = [];
  for (let at = 0; at < bytes.length; ) {
    const length = bytes.readUInt32BE(at + 1);
    frames.push({ flags: bytes[at]!, json: JSON.parse(bytes.subarray(at + 5, at + 5 + length).toString()) });
    at += 5 + length;
  }
  return frames;
}

function list(header: string | null): string[] {
  return (header ?? "").split(",").map((h) => h.trim().toLowerCase());
}
