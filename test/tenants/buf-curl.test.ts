// The README's TenantService calls, made with `buf curl` as a user would.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.ts";
import { operatorToken } from "./support.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const BUF_TIMEOUT_MS = 60_000;
const GRPC = ["--protocol", "grpc", "--http2-prior-knowledge"];

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s?.close());

function bufCurl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
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

describe("TenantService through buf curl, as in the README", () => {
  it("lets an operator cap a tenant and switch executions off, and the tenant read it", { timeout: 3 * BUF_TIMEOUT_MS }, async () => {
    const ops = await operatorToken();
    const update = await bufCurl(
      ...GRPC,
      "-H",
      `authorization: Bearer ${ops}`,
      "-d",
      '{"tenant_id":"acme","limits":{"max_agents":50,"rate_limit_per_second":20,"rate_limit_burst":40},"update_mask":"maxAgents,rateLimitPerSecond,rateLimitBurst"}',
      `${s.url}/agentplatform.v1.TenantService/UpdateTenantLimits`,
    );
    expect(update.code, update.stderr).toBe(0);
    expect(JSON.parse(update.stdout).settings.overrides).toEqual({ maxAgents: 50, rateLimitPerSecond: 20, rateLimitBurst: 40 });

    const toggle = await bufCurl(
      ...GRPC,
      "-H",
      `authorization: Bearer ${ops}`,
      "-d",
      '{"tenant_id":"acme","name":"executions.enabled","enabled":false}',
      `${s.url}/agentplatform.v1.TenantService/SetFeatureToggle`,
    );
    expect(toggle.code, toggle.stderr).toBe(0);
    expect(JSON.parse(toggle.stdout).featureToggle).toMatchObject({ name: "executions.enabled", overridden: true, defaultEnabled: true });

    const read = await bufCurl(
      ...GRPC,
      "-H",
      `authorization: Bearer ${await s.token("acme", ["viewer"])}`,
      "-d",
      "{}",
      `${s.url}/agentplatform.v1.TenantService/GetTenantSettings`,
    );
    expect(read.code, read.stderr).toBe(0);
    const { settings } = JSON.parse(read.stdout);
    expect(settings.limits).toMatchObject({ maxAgents: 50, rateLimitPerSecond: 20, rateLimitBurst: 40 });
    expect(settings.featureToggles[0]).toMatchObject({ name: "executions.enabled", overridden: true });
    expect(settings.featureToggles[0].enabled).toBeUndefined(); // false: omitted in JSON
  });
});
