import * as http from "node:http";
import { randomUUID } from "node:crypto";
import * as grpcJs from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { clientOf, Code, connectJson, errorOf, grpc, grpcWeb } from "../support/clients.ts";
import { closeRawAgents, connectCall, envelope, grpcSession, type GrpcSession } from "../support/raw-wire.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { operatorToken, reasonOf, retryDelayOf, tenantsAs } from "./support.ts";

/*
 * A tenant whose bucket the store just found empty is refused before its
 * call is read (src/pipeline/admission/early-admission.ts): the proof is a body no
 * decoder accepts, which the full path answers INVALID_ARGUMENT (Connect
 * decodes the message before any interceptor) and the early path
 * RESOURCE_EXHAUSTED. The answer must be the full path's, for every client,
 * and everything the early path is not sure of must go the full path.
 */

// One token a second, burst one: after the first call the store refuses,
// and for the next second the early path does.
const LIMIT = { RATE_LIMIT_PER_SECOND: "1", RATE_LIMIT_BURST: "1" };
const MAX_BODY = 16 * 1024;
const GARBAGE = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]);
const GET_TOOL = "/agentplatform.v1.ToolService/GetTool";

let s: TestServer;
let raw: GrpcSession;
beforeAll(async () => {
  s = await startTestServer({ ...LIMIT, MAX_MESSAGE_BYTES: String(MAX_BODY) });
  raw = grpcSession(s.url);
});
afterAll(async () => {
  raw?.close();
  closeRawAgents();
  await s?.close();
});

const run = randomUUID().slice(0, 8);
const tenant = (name: string) => `early-${name}-${run}`;

/** Spends the tenant's token and returns the store's refusal (the full path's answer). */
async function emptyBucket(token: string) {
  const tools = clientOf(ToolService, connectJson(s.url, token));
  for (let i = 0; i < 10; i++) {
    const err = await tools.listTools({}).then(
      () => undefined,
      (e: unknown) => errorOf(Promise.reject(e)),
    );
    if (err) return err;
  }
  throw new Error("the bucket never ran empty");
}

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

describe("refusing a tenant with an empty bucket before its call is read", () => {
  const protocols = [
    { name: "gRPC", call: (token: string) => raw.call(GET_TOOL, envelope(GARBAGE), auth(token)) },
    {
      name: "gRPC-Web",
      call: (token: string) => connectCall(s.url, GET_TOOL, envelope(GARBAGE), { contentType: "application/grpc-web+proto", headers: auth(token) }),
    },
    {
      name: "Connect (proto)",
      call: (token: string) => connectCall(s.url, GET_TOOL, GARBAGE, { contentType: "application/proto", headers: auth(token) }),
    },
    {
      name: "Connect (JSON)",
      call: (token: string) => connectCall(s.url, GET_TOOL, "{not json", { contentType: "application/json", headers: auth(token) }),
    },
  ];

  it.each(protocols)("answers $name RESOURCE_EXHAUSTED without reading the body (the full path says INVALID_ARGUMENT)", async ({ name, call }) => {
    const token = await s.token(tenant(name.replace(/\W/g, "")));
    // Not limited yet: the body is read and refused as undecodable.
    expect((await call(token)).code).toBe("invalid_argument");
    await emptyBucket(token);
    const answer = await call(token);
    expect(answer.code).toBe("resource_exhausted");
    expect(answer.message).toMatch(/too many requests/);
  });

  const clients = [
    { name: "Connect JSON over HTTP/1.1", transport: (token: string) => connectJson(s.url, token) },
    { name: "gRPC over HTTP/2", transport: (token: string) => grpc(s.url, token) },
    { name: "gRPC-Web (connect-web)", transport: (token: string) => grpcWeb(s.url, token) },
  ];

  it.each(clients)("gives $name the same refusal as the full path: message, RetryInfo, ErrorInfo", async ({ name, transport }) => {
    const token = await s.token(tenant(`client-${name.replace(/\W/g, "")}`));
    const full = await emptyBucket(token);
    const early = await errorOf(clientOf(ToolService, transport(token)).getTool({ toolId: randomUUID() }));
    expect(Code[early.code]).toBe(Code[Code.ResourceExhausted]);
    expect(early.rawMessage).toBe(full.rawMessage);
    expect(reasonOf(early)).toBe("RATE_LIMITED");
    const delay = retryDelayOf(early)!;
    expect(delay).toBeGreaterThan(0);
    expect(delay).toBeLessThanOrEqual(1000);
    expect(early.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({ retry_after_ms: String(delay) });
  });

  it("gives @grpc/grpc-js stubs a trailers-only RESOURCE_EXHAUSTED with RetryInfo in grpc-status-details-bin", async () => {
    const root = new URL("../../", import.meta.url).pathname;
    const definition = protoLoader.loadSync("agentplatform/v1/tool_service.proto", {
      includeDirs: [`${root}proto`, `${root}proto-deps`],
    });
    const loaded = grpcJs.loadPackageDefinition(definition) as unknown as {
      agentplatform: { v1: { ToolService: grpcJs.ServiceClientConstructor } };
    };
    const stub = new loaded.agentplatform.v1.ToolService(`127.0.0.1:${s.port}`, grpcJs.credentials.createInsecure());
    try {
      const token = await s.token(tenant("grpc-js"));
      await emptyBucket(token);
      const metadata = new grpcJs.Metadata();
      metadata.set("authorization", `Bearer ${token}`);
      const err = await new Promise<grpcJs.ServiceError>((resolve, reject) =>
        (stub as unknown as Record<string, (...a: unknown[]) => void>).getTool!.call(
          stub,
          { tool_id: randomUUID() },
          metadata,
          { deadline: Date.now() + 10_000 },
          (e: grpcJs.ServiceError | null) => (e ? resolve(e) : reject(new Error("admitted"))),
        ),
      );
      expect(err.code).toBe(grpcJs.status.RESOURCE_EXHAUSTED);
      // grpc-js hands over the raw details; Connect's own reader decodes them.
      const bin = err.metadata.get("grpc-status-details-bin")[0] as Buffer;
      const decoded = findTrailerError(
        new Headers({ "grpc-status": String(err.code), "grpc-status-details-bin": bin.toString("base64") }),
      )!;
      expect(reasonOf(decoded)).toBe("RATE_LIMITED");
      expect(retryDelayOf(decoded)).toBeGreaterThan(0);
    } finally {
      stub.close();
    }
  });

  it("keeps the HTTP/1.1 connection: refusals and the next admitted call travel on one socket", async () => {
    const token = await s.token(tenant("keep-alive"));
    await emptyBucket(token);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    const post = () =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(
          `${s.url}/agentplatform.v1.ToolService/ListTools`,
          { method: "POST", agent, headers: { "content-type": "application/json", ...auth(token) } },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("socket", (socket) => sockets.add(socket));
        req.on("error", reject);
        req.end("{}");
      });
    try {
      const refusals = [await post(), await post(), await post()];
      expect(refusals).toEqual([429, 429, 429]);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect(await post()).toBe(200);
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it("reads a refused body only up to the size limit, then answers and closes the connection", async () => {
    const token = await s.token(tenant("big-body"));
    await emptyBucket(token);
    const answer = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
      const req = http.request(
        `${s.url}/agentplatform.v1.ToolService/CreateTool`,
        { method: "POST", agent: false, headers: { "content-type": "application/json", ...auth(token) } },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
        },
      );
      req.on("error", reject);
      // Four times the limit, and the request never ends: only the limit lets the answer come.
      req.write(`{"tool":{"name":"${"x".repeat(4 * MAX_BODY)}`);
    });
    expect(answer).toEqual({ status: 429, connection: "close" });
  });

  it("leaves to the full path what it is not sure of", async () => {
    const t = tenant("unsure");
    const editor = await s.token(t);
    await emptyBucket(editor);
    // A role the method needs but the caller lacks: PERMISSION_DENIED, as
    // the full path answers it (auth comes before the rate limit).
    const viewer = await s.token(t, ["viewer"]);
    const denied = await errorOf(clientOf(ToolService, connectJson(s.url, viewer)).createTool({ tool: { name: "x", description: "d" } }));
    expect(Code[denied.code]).toBe(Code[Code.PermissionDenied]);
    // A token never verified (a forged one) is verified, and refused, first.
    const forged = `${editor.slice(0, -4)}AAAA`;
    expect((await raw.call(GET_TOOL, envelope(new Uint8Array()), auth(forged))).code).toBe("unauthenticated");
    // Connect streaming is left to the full path, which refuses it the same.
    const stream = await connectCall(s.url, "/agentplatform.v1.ExecutionService/WatchExecution", envelope(new TextEncoder().encode("{}")), {
      contentType: "application/connect+json",
      headers: auth(editor),
    });
    expect(stream.code).toBe("resource_exhausted");
    // Public methods are never limited.
    expect((await raw.call("/grpc.health.v1.Health/Check", envelope(new Uint8Array()), auth(editor))).code).toBe("ok");
  });

  it("admits at once a tenant whose limit an operator just raised", async () => {
    const t = tenant("raised");
    const token = await s.token(t);
    await emptyBucket(token);
    await tenantsAs(s.url, await operatorToken()).updateTenantLimits({
      tenantId: t,
      limits: { rateLimitPerSecond: 100, rateLimitBurst: 100 },
      updateMask: { paths: ["rate_limit_per_second", "rate_limit_burst"] },
    });
    await clientOf(ToolService, grpc(s.url, token)).listTools({});
  });
});
