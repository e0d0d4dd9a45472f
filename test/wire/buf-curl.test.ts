// `buf curl` against a real server, as the README tells users to call it:
// reflection (v1 and v1alpha) over gRPC, calls over gRPC, Connect and gRPC-Web.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { clientOf, connectJson } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const BUF_TIMEOUT_MS = 60_000;

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s?.close());

interface Result {
  /** Exit code: 0, below 8 for usage errors, or the gRPC code shifted left by three. */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `npx buf curl <args>` from the repository root. */
function bufCurl(...args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile("npx", ["buf", "curl", ...args], { cwd: root, timeout: BUF_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") {
        reject(Object.assign(err, { message: `${err.message}\n${stderr}` }));
        return;
      }
      resolve({ code: typeof err?.code === "number" ? err.code : 0, stdout, stderr });
    });
  });
}

const GRPC = ["--protocol", "grpc", "--http2-prior-knowledge"];
const SERVICES = [
  "agentplatform.v1.AgentService",
  "agentplatform.v1.ToolService",
  "agentplatform.v1.ExecutionService",
  "agentplatform.v1.CredentialService",
  "agentplatform.v1.TenantService",
  "grpc.health.v1.Health",
];

describe.each(["grpc-v1", "grpc-v1alpha"])("reflection through --reflect-protocol %s", (reflectProtocol) => {
  it("lists every service", { timeout: BUF_TIMEOUT_MS }, async () => {
    const result = await bufCurl(...GRPC, "--reflect-protocol", reflectProtocol, "--list-services", s.url);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim().split("\n")).toEqual(expect.arrayContaining(SERVICES));
  });
});

describe("buf curl over gRPC", () => {
  it("lists the methods, ToolService/CreateTool among them", { timeout: BUF_TIMEOUT_MS }, async () => {
    const result = await bufCurl(...GRPC, "--list-methods", s.url);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim().split("\n")).toEqual(
      expect.arrayContaining(["agentplatform.v1.ToolService/CreateTool", "grpc.health.v1.Health/Check"]),
    );
  });

  it("checks health without a token", { timeout: BUF_TIMEOUT_MS }, async () => {
    const result = await bufCurl(...GRPC, `${s.url}/grpc.health.v1.Health/Check`);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ status: "SERVING" });
  });

  it("creates a tool with a bearer token and prints it as JSON", { timeout: BUF_TIMEOUT_MS }, async () => {
    const token = await s.token("buf-grpc");
    const result = await bufCurl(
      ...GRPC,
      "-H",
      `authorization: Bearer ${token}`,
      "-d",
      JSON.stringify({ tool: { name: "buf-grpc", description: "made by buf curl" } }),
      `${s.url}/agentplatform.v1.ToolService/CreateTool`,
    );
    expect(result.code, result.stderr).toBe(0);
    const { tool } = JSON.parse(result.stdout);
    expect(tool).toMatchObject({ name: "buf-grpc", description: "made by buf curl" });
    expect(tool.id).toMatch(/^[0-9a-f-]{36}$/);
    const { tool: stored } = await clientOf(ToolService, connectJson(s.url, token)).getTool({ toolId: tool.id });
    expect(stored?.name).toBe("buf-grpc");
  });

  it("fails the same call without a token as unauthenticated", { timeout: BUF_TIMEOUT_MS }, async () => {
    const result = await bufCurl(
      ...GRPC,
      "-d",
      JSON.stringify({ tool: { name: "buf-anonymous", description: "d" } }),
      `${s.url}/agentplatform.v1.ToolService/CreateTool`,
    );
    expect(result.code).toBe(16 << 3);
    expect(result.stdout + result.stderr).toContain("unauthenticated");
  });
});

describe("buf curl over the Connect protocol and gRPC-Web", () => {
  /** Creates a tool with `args` added to the call; returns its name as the server printed it. */
  async function createWith(name: string, ...args: string[]): Promise<{ result: Result; tool: { name?: string } }> {
    const result = await bufCurl(
      ...args,
      "-H",
      `authorization: Bearer ${await s.token("buf-other")}`,
      "-d",
      JSON.stringify({ tool: { name, description: "d" } }),
      `${s.url}/agentplatform.v1.ToolService/CreateTool`,
    );
    expect(result.code, result.stderr).toBe(0);
    return { result, tool: JSON.parse(result.stdout).tool };
  }

  it("calls with Connect over HTTP/2 with the schema from reflection", { timeout: BUF_TIMEOUT_MS }, async () => {
    const { tool } = await createWith("buf-connect-h2", "--protocol", "connect");
    expect(tool.name).toBe("buf-connect-h2");
  });

  // Reflection needs HTTP/2; with the schema from the local buf workspace,
  // buf curl speaks plain HTTP/1.1 like a browser or curl.
  it("calls with Connect over HTTP/1.1 with the schema from the workspace", { timeout: BUF_TIMEOUT_MS }, async () => {
    const { result, tool } = await createWith("buf-connect-h1", "--schema", ".", "--protocol", "connect", "-v");
    expect(tool.name).toBe("buf-connect-h1");
    expect(result.stderr).toMatch(/< \(#1\) HTTP\/1\.1 200/);
  });

  it("calls with gRPC-Web over HTTP/1.1 with the schema from the workspace", { timeout: BUF_TIMEOUT_MS }, async () => {
    const { result, tool } = await createWith("buf-grpc-web", "--schema", ".", "--protocol", "grpcweb", "-v");
    expect(tool.name).toBe("buf-grpc-web");
    expect(result.stderr).toMatch(/< \(#1\) HTTP\/1\.1 200/);
  });
});
