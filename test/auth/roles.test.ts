import { Agent } from "node:http";
import { create, createFileRegistry, type DescMethod, type DescService } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { EmptySchema, file_google_protobuf_empty, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient, createRouterTransport, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SignJWT, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { requirementOf } from "../../src/auth/policy.ts";
import { OPERATOR_ROLE, ROLES, roleSatisfies, type Role } from "../../src/auth/principal.ts";
import { createAuthenticator } from "../../src/auth/tokens.ts";
import { createAdmission } from "../../src/pipeline/admission/admission.ts";
import { admissionInterceptor } from "../../src/pipeline/admission/admission-interceptor.ts";
import { errorInterceptor } from "../../src/pipeline/interceptors/errors.ts";
import { createLogger } from "../../src/log.ts";
import { allServices, apiServices } from "../../src/routes.ts";
import { Code, errorOf } from "../support/clients.ts";
import { startTestServer, TEST_SECRET, type TestServer } from "../support/server.ts";

const secretBytes = new TextEncoder().encode(TEST_SECRET);
const isPlatformService = (service: DescService) => /^grpc\.(health|reflection)\./.test(service.typeName);
const everyMethod = allServices.flatMap((service) => service.methods.map((method) => ({ service, method })));

describe("the policy table", () => {
  it("lists every method of every service the server answers", () => {
    const missing = everyMethod
      .filter(({ service, method }) => requirementOf(service, method.name) === undefined)
      .map(({ service, method }) => `${service.typeName}/${method.name}`);
    expect(missing).toEqual([]);
    expect(everyMethod.length).toBeGreaterThan(40);
  });

  it("makes only grpc.health and grpc.reflection methods public", () => {
    for (const { service, method } of everyMethod) {
      const requirement = requirementOf(service, method.name);
      const where = `${service.typeName}/${method.name}`;
      if (isPlatformService(service)) {
        expect(requirement, where).toBe("public");
      } else {
        expect([...ROLES, OPERATOR_ROLE] as readonly string[], where).toContain(requirement);
      }
    }
  });

  it("has no requirement for a method it does not list, which the auth interceptor denies", () => {
    // src/pipeline/admission/admission.ts: `requirementOf(...) === undefined` throws
    // PERMISSION_DENIED (METHOD_NOT_IN_POLICY) before the token is even read;
    // the router-transport tests below show it end to end.
    expect(requirementOf(ToolService, "PurgeTools")).toBeUndefined();
    expect(requirementOf(ToolService, "listTools")).toBeUndefined(); // method names are case-sensitive
    expect(requirementOf(unlisted.Service, "Ping")).toBeUndefined();
  });
});

/*
 * Services the policy table does not know, built from descriptors made here:
 * the real server cannot be given one without touching src/, so they run
 * through the real auth and error interceptors on a router transport.
 */
const unlisted = (() => {
  const registry = createFileRegistry(
    create(FileDescriptorProtoSchema, {
      name: "test/unlisted.proto",
      package: "test.unlisted.v1",
      syntax: "proto3",
      dependency: ["google/protobuf/empty.proto"],
      service: [
        {
          name: "Unlisted",
          method: [{ name: "Ping", inputType: ".google.protobuf.Empty", outputType: ".google.protobuf.Empty" }],
        },
      ],
    }),
    (name) => (name === "google/protobuf/empty.proto" ? file_google_protobuf_empty : undefined),
  );
  // A listed service's name with a method the table lacks: a method added to
  // the contract but not to the table is denied until someone decides its role.
  const extended = createFileRegistry(
    create(FileDescriptorProtoSchema, {
      name: "test/extended_tool_service.proto",
      package: "agentplatform.v1",
      syntax: "proto3",
      dependency: ["google/protobuf/empty.proto"],
      service: [
        {
          name: "ToolService",
          method: [{ name: "PurgeTools", inputType: ".google.protobuf.Empty", outputType: ".google.protobuf.Empty" }],
        },
      ],
    }),
    (name) => (name === "google/protobuf/empty.proto" ? file_google_protobuf_empty : undefined),
  );
  type EmptyMethod = { methodKind: "unary"; input: typeof EmptySchema; output: typeof EmptySchema };
  return {
    Service: registry.getService("test.unlisted.v1.Unlisted") as GenService<{ ping: EmptyMethod }>,
    ExtendedToolService: extended.getService("agentplatform.v1.ToolService") as GenService<{ purgeTools: EmptyMethod }>,
  };
})();

describe("the auth interceptor", () => {
  let handlerCalls = 0;
  const transport = createRouterTransport(
    (router) => {
      router.service(unlisted.Service, { ping: () => (handlerCalls++, {}) });
      router.service(unlisted.ExtendedToolService, { purgeTools: () => (handlerCalls++, {}) });
      router.service(ToolService, { listTools: () => (handlerCalls++, { tools: [], nextPageToken: "" }) });
    },
    {
      router: {
        interceptors: [
          errorInterceptor(createLogger("error", () => {})),
          admissionInterceptor(createAdmission({ authenticator: createAuthenticator({ secret: secretBytes }) })),
        ],
      },
    },
  );
  const as = (token?: string): Transport => withBearer(transport, token);

  it("denies a method missing from the table, even to an admin, without calling the handler", async () => {
    const admin = await sign({ roles: ["admin"] });
    for (const call of [
      createClient(unlisted.Service, as(admin)).ping({}),
      createClient(unlisted.ExtendedToolService, as(admin)).purgeTools({}),
    ]) {
      const err = await errorOf(call);
      expect(err.code).toBe(Code.PermissionDenied);
      expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("METHOD_NOT_IN_POLICY");
    }
    expect(handlerCalls).toBe(0);
  });

  it("denies a method missing from the table before looking for a token", async () => {
    const err = await errorOf(createClient(unlisted.Service, as()).ping({}));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(handlerCalls).toBe(0);
  });

  it("lets a listed method through on the same transport (control)", async () => {
    await createClient(ToolService, as(await sign({ roles: ["viewer"] }))).listTools({});
    expect(handlerCalls).toBe(1);
  });
});

describe("roles on a real server", () => {
  let s: TestServer;
  const tenant = "roles";
  const schema = { type: "object", properties: { q: { type: "string" } } };
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s?.close());

  const tools = (token: string) => createClient(ToolService, connect(s.url, token));

  /** A tool of the tenant, made by an editor, for the role under test to act on. */
  async function arrangeTool(name: string) {
    const { tool } = await tools(await s.token(tenant, ["editor"])).createTool({
      tool: { name, description: "arranged", parameters: schema },
    });
    return tool!;
  }

  async function expectRoleRequired(call: Promise<unknown>, role: Role): Promise<void> {
    const err = await errorOf(call);
    expect(err.code).toBe(Code.PermissionDenied);
    const info = err.findDetails(ErrorInfoSchema)[0];
    expect(info?.reason).toBe("ROLE_REQUIRED");
    expect(info?.metadata.role).toBe(role);
  }

  it("lets a viewer list and read tools", async () => {
    const tool = await arrangeTool("viewer-reads");
    const viewer = tools(await s.token(tenant, ["viewer"]));
    expect((await viewer.getTool({ toolId: tool.id })).tool).toEqual(tool);
    expect((await viewer.listTools({ namePrefix: "viewer-reads" })).tools).toEqual([tool]);
  });

  it("refuses a viewer every write with PERMISSION_DENIED (ROLE_REQUIRED) and changes nothing", async () => {
    const tool = await arrangeTool("viewer-writes");
    const viewer = tools(await s.token(tenant, ["viewer"]));
    await expectRoleRequired(viewer.createTool({ tool: { name: "by-viewer", description: "d" } }), "editor");
    await expectRoleRequired(
      viewer.updateTool({ toolId: tool.id, tool: { description: "x" }, updateMask: { paths: ["description"] } }),
      "editor",
    );
    await expectRoleRequired(viewer.deleteTool({ toolId: tool.id }), "editor");

    const editor = tools(await s.token(tenant, ["editor"]));
    expect((await editor.getTool({ toolId: tool.id })).tool).toEqual(tool);
    expect((await editor.listTools({ namePrefix: "by-viewer" })).tools).toEqual([]);
  });

  it("checks the role before validating the request", async () => {
    const viewer = tools(await s.token(tenant, ["viewer"]));
    await expectRoleRequired(viewer.createTool({ tool: { name: "", description: "x".repeat(5000) } }), "editor");
    await expectRoleRequired(viewer.updateTool({ toolId: "not-a-uuid", updateMask: { paths: ["id"] } }), "editor");
    await expectRoleRequired(viewer.deleteTool({ toolId: "" }), "editor");
  });

  it("lets an editor create, update and delete", async () => {
    await canWrite(await s.token(tenant, ["editor"]), "editor-writes");
  });

  it("lets an admin do everything an editor can", async () => {
    const admin = await s.token(tenant, ["admin"]);
    await canWrite(admin, "admin-writes");
    const tool = await arrangeTool("admin-reads");
    expect((await tools(admin).getTool({ toolId: tool.id })).tool).toEqual(tool);
  });

  it("takes the strongest of several roles", async () => {
    await canWrite(await s.token(tenant, ["viewer", "editor"]), "several-roles");
  });

  it("refuses even reads to a token without a usable roles claim", async () => {
    const noRoles: Record<string, unknown>[] = [
      { roles: undefined },
      { roles: [] },
      { roles: ["owner", "superuser"] },
      { roles: "admin" },
      { roles: ["Admin"] },
      { role: "admin", roles: undefined },
    ];
    for (const overrides of noRoles) {
      const client = tools(await sign({ tenant_id: tenant, ...overrides }));
      await expectRoleRequired(client.listTools({}), "viewer");
      await expectRoleRequired(client.getTool({ toolId: "00000000-0000-4000-8000-000000000000" }), "viewer");
    }
  });

  async function canWrite(token: string, name: string): Promise<void> {
    const client = tools(token);
    const { tool } = await client.createTool({ tool: { name, description: "v1" } });
    const { tool: updated } = await client.updateTool({
      toolId: tool!.id,
      tool: { description: "v2" },
      updateMask: { paths: ["description"] },
      etag: tool!.etag,
    });
    expect(updated?.description).toBe("v2");
    await client.deleteTool({ toolId: tool!.id, etag: updated!.etag });
    expect((await errorOf(client.getTool({ toolId: tool!.id }))).code).toBe(Code.NotFound);
  }

  /*
   * Every API method, implemented yet or not, is refused to a role below its
   * requirement before any handler runs. Only refusals are exercised: calls
   * that would be allowed may have effects (and services still being built
   * would answer UNIMPLEMENTED), so they are left to each service's tests.
   * Operator-only methods are refused to every tenant role, admin included
   * (counted apart: an admin is refused nothing else).
   */
  const api = apiServices.flatMap((service) => service.methods.map((method) => ({ service, method })));
  for (const held of [undefined, ...ROLES] as (Role | undefined)[]) {
    it(`refuses ${held ?? "a token without roles"} every API method that needs more`, async () => {
      const token = await sign({ tenant_id: tenant, roles: held ? [held] : undefined });
      const transport = connect(s.url, token);
      let refused = 0;
      let refusedOperatorOnly = 0;
      for (const { service, method } of api) {
        const needed = requirementOf(service, method.name);
        if (needed === undefined || needed === "public") continue;
        if (needed !== OPERATOR_ROLE && roleSatisfies(held, needed)) continue;
        const err = await errorOf(invoke(transport, service, method));
        expect(Code[err.code], `${service.typeName}/${method.name}`).toBe(Code[Code.PermissionDenied]);
        expect(err.findDetails(ErrorInfoSchema)[0]?.metadata.role, `${service.typeName}/${method.name}`).toBe(needed);
        if (needed === OPERATOR_ROLE) refusedOperatorOnly++;
        else refused++;
      }
      expect(refused > 0).toBe(held !== "admin");
      expect(refusedOperatorOnly).toBeGreaterThan(0);
    });
  }
});

// No keep-alive: an idle pooled connection would hold up the server's shutdown.
const agent = new Agent({ keepAlive: false });

function connect(baseUrl: string, token: string): Transport {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    useBinaryFormat: false,
    interceptors: [bearer],
    nodeOptions: { agent },
  });
}

/** `transport` with the bearer token added to each call (none when undefined). */
function withBearer(transport: Transport, token: string | undefined): Transport {
  const header = (init?: ConstructorParameters<typeof Headers>[0]) => {
    const headers = new Headers(init);
    if (token) headers.set("authorization", `Bearer ${token}`);
    return headers;
  };
  return {
    unary: (method, signal, timeoutMs, init, input, contextValues) =>
      transport.unary(method, signal, timeoutMs, header(init), input, contextValues),
    stream: (method, signal, timeoutMs, init, input, contextValues) =>
      transport.stream(method, signal, timeoutMs, header(init), input, contextValues),
  };
}

/** A token for the "roles" tenant signed with the test secret; undefined claims are left out. */
function sign(overrides: Record<string, unknown>): Promise<string> {
  const payload: Record<string, unknown> = { sub: "role-tester", tenant_id: "roles", ...overrides };
  for (const [key, value] of Object.entries(payload)) if (value === undefined) delete payload[key];
  return new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(secretBytes);
}

/** Calls any unary or server-streaming method with an empty request; resolves once it has answered. */
async function invoke(transport: Transport, service: DescService, method: DescMethod): Promise<void> {
  const client = createClient(service, transport) as unknown as Record<string, (req: object) => unknown>;
  const call = client[method.localName]!;
  if (method.methodKind === "unary") {
    await call({});
  } else if (method.methodKind === "server_streaming") {
    for await (const _ of call({}) as AsyncIterable<unknown>) break;
  } else {
    throw new Error(`no test call for a ${method.methodKind} method (${service.typeName}/${method.name})`);
  }
}
