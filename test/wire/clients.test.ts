// One ToolService round trip from every kind of client a user may bring: a
// @grpc/grpc-js backend stub, curl-style JSON over HTTP/1.1, the Connect
// protocol (POST and GET), gRPC-Web from the browser library, and gRPC from
// connect-node. All reach the same port of one real server.
import { create, createFileRegistry, fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { anyUnpack, FileDescriptorProtoSchema, file_google_protobuf_any, type Any } from "@bufbuild/protobuf/wkt";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpcJs from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { bearer, clientOf, Code, connectJson, errorOf, grpc, grpcWeb } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s?.close());

/** What a round trip needs from a client, whatever its wire format. */
interface ToolApi {
  create(name: string, description: string): Promise<{ id: string; name: string; etag: string }>;
  get(id: string): Promise<{ name: string; description: string }>;
  list(): Promise<string[]>;
  update(id: string, description: string, etag: string): Promise<{ description: string; etag: string }>;
  remove(id: string): Promise<void>;
}

/** Creates, reads, lists, updates and deletes one tool; the tenant must start empty. */
async function roundTrip(api: ToolApi, name: string): Promise<void> {
  const created = await api.create(name, "first");
  expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
  expect(created.name).toBe(name);
  expect(await api.get(created.id)).toMatchObject({ name, description: "first" });
  expect(await api.list()).toEqual([name]);
  const updated = await api.update(created.id, "second", created.etag);
  expect(updated.description).toBe("second");
  expect(updated.etag).not.toBe(created.etag);
  expect((await api.get(created.id)).description).toBe("second");
  await api.remove(created.id);
  expect(await api.list()).toEqual([]);
}

/** The round trip through a connect-es client. */
function connectApi(client: ReturnType<typeof clientOf<typeof ToolService>>): ToolApi {
  return {
    async create(name, description) {
      const { tool } = await client.createTool({ tool: { name, description } });
      return tool!;
    },
    async get(id) {
      return (await client.getTool({ toolId: id })).tool!;
    },
    async list() {
      return (await client.listTools({})).tools.map((t) => t.name);
    },
    async update(id, description, etag) {
      const { tool } = await client.updateTool({ toolId: id, tool: { description }, updateMask: { paths: ["description"] }, etag });
      return tool!;
    },
    async remove(id) {
      await client.deleteTool({ toolId: id });
    },
  };
}

describe.each([
  { protocol: "Connect JSON over HTTP/1.1", tenant: "wire-connect", transport: (url: string, token: string) => connectJson(url, token) },
  {
    protocol: "Connect binary with HTTP GET for side-effect-free methods",
    tenant: "wire-connect-get",
    transport: (url: string, token: string) =>
      createConnectTransport({ baseUrl: url, httpVersion: "1.1", useHttpGet: true, interceptors: [bearer(token)] }),
  },
  { protocol: "gRPC-Web (connect-web)", tenant: "wire-grpc-web", transport: grpcWeb },
  { protocol: "gRPC over HTTP/2 (connect-node)", tenant: "wire-grpc", transport: grpc },
])("ToolService through $protocol", ({ tenant, transport }) => {
  it("creates, reads, lists, updates and deletes a tool", async () => {
    const client = clientOf(ToolService, transport(s.url, await s.token(tenant)));
    await roundTrip(connectApi(client), `${tenant}-tool`);
  });
});

describe("ToolService through @grpc/grpc-js stubs from @grpc/proto-loader", () => {
  // Struct, Timestamp and FieldMask come bundled with protobufjs; buf/validate
  // comes from proto-deps/.
  const definition = protoLoader.loadSync("agentplatform/v1/tool_service.proto", {
    includeDirs: [`${root}proto`, `${root}proto-deps`],
    longs: String,
    enums: String,
    defaults: true,
  });
  const loaded = grpcJs.loadPackageDefinition(definition) as unknown as {
    agentplatform: { v1: { ToolService: grpcJs.ServiceClientConstructor } };
  };
  let stub: grpcJs.Client;

  beforeAll(() => {
    stub = new loaded.agentplatform.v1.ToolService(`127.0.0.1:${s.port}`, grpcJs.credentials.createInsecure());
  });
  afterAll(() => stub?.close());

  /** Calls a unary method of the stub; rejects with the grpc-js ServiceError. */
  function call<T>(method: string, request: object, metadata = new grpcJs.Metadata()): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = (stub as unknown as Record<string, UnaryStub<T>>)[method]!;
      fn.call(stub, request, metadata, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }
  async function failure(promise: Promise<unknown>): Promise<grpcJs.ServiceError> {
    try {
      await promise;
    } catch (err) {
      return err as grpcJs.ServiceError;
    }
    throw new Error("expected the call to fail, but it succeeded");
  }
  async function authorized(tenant: string): Promise<grpcJs.Metadata> {
    const metadata = new grpcJs.Metadata();
    metadata.set("authorization", `Bearer ${await s.token(tenant)}`);
    return metadata;
  }

  type UnaryStub<T> = (
    request: object,
    metadata: grpcJs.Metadata,
    options: grpcJs.CallOptions,
    done: (err: grpcJs.ServiceError | null, res: T) => void,
  ) => void;
  type GrpcTool = { id: string; name: string; description: string; etag: string; createTime: { seconds: string } | null };

  it("creates, reads, lists, updates and deletes a tool", async () => {
    const md = await authorized("wire-grpc-js");
    await roundTrip(
      {
        async create(name, description) {
          const { tool } = await call<{ tool: GrpcTool }>("createTool", { tool: { name, description } }, md);
          expect(Number(tool.createTime?.seconds)).toBeGreaterThan(0);
          return tool;
        },
        async get(id) {
          return (await call<{ tool: GrpcTool }>("getTool", { toolId: id }, md)).tool;
        },
        async list() {
          return (await call<{ tools: GrpcTool[] }>("listTools", {}, md)).tools.map((t) => t.name);
        },
        async update(id, description, etag) {
          const request = { toolId: id, tool: { description }, updateMask: { paths: ["description"] }, etag };
          return (await call<{ tool: GrpcTool }>("updateTool", request, md)).tool;
        },
        async remove(id) {
          await call("deleteTool", { toolId: id }, md);
        },
      },
      "wire-grpc-js-tool",
    );
  });

  it("sends a google.protobuf.Struct that other clients read back as the same JSON", async () => {
    const md = await authorized("wire-grpc-js-struct");
    const parameters = {
      fields: {
        type: { stringValue: "object" },
        required: { listValue: { values: [{ stringValue: "q" }] } },
        properties: { structValue: { fields: { q: { structValue: { fields: { type: { stringValue: "string" } } } } } } },
      },
    };
    const { tool } = await call<{ tool: GrpcTool }>("createTool", { tool: { name: "with-struct", description: "d", parameters } }, md);
    const viaConnect = clientOf(ToolService, connectJson(s.url, await s.token("wire-grpc-js-struct")));
    const { tool: read } = await viaConnect.getTool({ toolId: tool.id });
    expect(read?.parameters).toEqual({ type: "object", required: ["q"], properties: { q: { type: "string" } } });
  });

  it("fails a call without a token with UNAUTHENTICATED", async () => {
    const err = await failure(call("listTools", {}));
    expect(err.code).toBe(grpcJs.status.UNAUTHENTICATED);
  });

  it("sends INVALID_ARGUMENT with a grpc-status-details-bin trailer holding a google.rpc.Status", async () => {
    const err = await failure(call("createTool", { tool: { name: "", description: "d" } }, await authorized("wire-grpc-js")));
    expect(err.code).toBe(grpcJs.status.INVALID_ARGUMENT);
    const [bin] = err.metadata.get("grpc-status-details-bin");
    expect(bin).toBeInstanceOf(Buffer);
    expect((bin as Buffer).length).toBeGreaterThan(0);

    const status = fromBinary(StatusSchema, bin as Buffer) as unknown as { code: number; message: string; details: Any[] };
    expect(status.code).toBe(grpcJs.status.INVALID_ARGUMENT);
    expect(status.message).not.toBe("");
    const badRequest = status.details.map((d) => anyUnpack(d, BadRequestSchema)).find((d) => d !== undefined);
    expect(badRequest?.fieldViolations.map((v) => v.field)).toContain("tool");
  });
});

describe("ToolService as plain HTTP/1.1 JSON (curl)", () => {
  it("answers a POST with content-type application/json to /agentplatform.v1.ToolService/GetTool", async () => {
    const token = await s.token("wire-curl");
    const { tool } = await clientOf(ToolService, connectJson(s.url, token)).createTool({ tool: { name: "curl", description: "d" } });
    const res = await fetch(`${s.url}/agentplatform.v1.ToolService/GetTool`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ tool_id: tool!.id }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toMatchObject({ tool: { id: tool!.id, name: "curl", description: "d" } });
  });

  it("answers a Connect GET with the message in the query string", async () => {
    const token = await s.token("wire-curl-get");
    const { tool } = await clientOf(ToolService, connectJson(s.url, token)).createTool({ tool: { name: "curl-get", description: "d" } });
    const query = new URLSearchParams({ connect: "v1", encoding: "json", message: JSON.stringify({ toolId: tool!.id }) });
    const res = await fetch(`${s.url}/agentplatform.v1.ToolService/GetTool?${query}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ tool: { id: tool!.id, name: "curl-get" } });
  });

  it("answers a POST without a token with HTTP 401 and a JSON error", async () => {
    const res = await fetch(`${s.url}/agentplatform.v1.ToolService/ListTools`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: "unauthenticated" });
  });
});

describe("Connect errors across protocols", () => {
  it("report the same code and details whatever the protocol", async () => {
    for (const transport of [connectJson, grpcWeb, grpc]) {
      const client = clientOf(ToolService, transport(s.url, await s.token("wire-errors")));
      const err = await errorOf(client.createTool({ tool: { name: "", description: "d" } }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toContain("tool");
    }
  });
});

// google.rpc.Status is not generated in gen/; a three-field descriptor is enough to decode it.
const StatusSchema: DescMessage = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "test/google/rpc/status.proto",
    package: "google.rpc",
    dependency: ["google/protobuf/any.proto"],
    syntax: "proto3",
    messageType: [
      {
        name: "Status",
        field: [
          { name: "code", number: 1, type: 5 /* INT32 */, label: 1, jsonName: "code" },
          { name: "message", number: 2, type: 9 /* STRING */, label: 1, jsonName: "message" },
          { name: "details", number: 3, type: 11 /* MESSAGE */, label: 3, typeName: ".google.protobuf.Any", jsonName: "details" },
        ],
      },
    ],
  }),
  (name) => (name === "google/protobuf/any.proto" ? file_google_protobuf_any : undefined),
).getMessage("google.rpc.Status")!;
