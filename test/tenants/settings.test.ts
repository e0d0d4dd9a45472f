import { randomUUID } from "node:crypto";
import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { ExecutionStatus } from "../../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { QuotaResource } from "../../gen/agentplatform/v1/tenant_pb.js";
import { TenantService } from "../../gen/agentplatform/v1/tenant_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { PreconditionFailureSchema } from "../../gen/google/rpc/error_details_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { clientOf, Code, errorOf } from "../support/clients.ts";
import { startTestServer, TEST_SECRET, type TestServer } from "../support/server.ts";
import { operatorToken, reasonOf, tenantsAs, transportOf } from "./support.ts";

/*
 * TenantService: tenants read their own settings; only platform operators
 * change them, naming the tenant in the request; a tenant admin cannot; no
 * tenant reads another's; and the executions toggles really switch runs off.
 */

const A = "settings-a";
const B = "settings-b";

let s: TestServer;
let operator: Client<typeof TenantService>;

beforeAll(async () => {
  s = await startTestServer({ RATE_LIMIT_PER_SECOND: "1000", RATE_LIMIT_BURST: "1000", QUOTA_MAX_TOOLS: "777" });
  operator = tenantsAs(s.url, await operatorToken());
});
afterAll(() => s?.close());

const tenantAs = async (tenant: string, role: "viewer" | "editor" | "admin") => tenantsAs(s.url, await s.token(tenant, [role]));

describe("GetTenantSettings", () => {
  it("shows a viewer its tenant's limits (the configured defaults), quota usage and toggles", async () => {
    const tools = clientOf(ToolService, transportOf(s.url, await s.token(A, ["editor"])));
    await tools.createTool({ tool: { name: "counted", description: "one tool" } });

    const { settings } = await (await tenantAs(A, "viewer")).getTenantSettings({});
    expect(settings?.tenantId).toBe(A);
    expect(settings?.limits).toMatchObject({
      rateLimitPerSecond: 1000,
      rateLimitBurst: 1000,
      maxAgents: 10_000,
      maxTools: 777,
      maxCredentials: 10_000,
      maxConcurrentExecutions: 1_000,
    });
    expect(settings?.overrides?.maxTools).toBeUndefined();
    const usage = Object.fromEntries(settings!.quotaUsage.map((u) => [QuotaResource[u.resource], { limit: u.limit, used: u.used }]));
    expect(usage).toEqual({
      AGENTS: { limit: 10_000n, used: 0n },
      TOOLS: { limit: 777n, used: 1n },
      CREDENTIALS: { limit: 10_000n, used: 0n },
      CONCURRENT_EXECUTIONS: { limit: 1_000n, used: 0n },
    });
    expect(settings!.featureToggles.map((t) => [t.name, t.enabled, t.overridden])).toEqual([
      ["executions.enabled", true, false],
      ["executions.streaming", true, false],
    ]);
    expect(settings?.etag).toBeTruthy();
  });

  it("lets a tenant name its own tenant, and refuses it another tenant's settings", async () => {
    const a = await tenantAs(A, "admin");
    expect((await a.getTenantSettings({ tenantId: A })).settings?.tenantId).toBe(A);

    const b = await tenantAs(B, "admin");
    const err = await errorOf(b.getTenantSettings({ tenantId: A }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(reasonOf(err)).toBe("TENANT_NOT_GRANTED");
  });

  it("shows a tenant its own overrides, never another tenant's", async () => {
    const current = (await operator.getTenantSettings({ tenantId: A })).settings!;
    await operator.updateTenantLimits({
      tenantId: A,
      limits: { maxAgents: 3 },
      updateMask: { paths: ["max_agents"] },
      etag: current.etag,
    });
    expect((await (await tenantAs(A, "viewer")).getTenantSettings({})).settings?.limits?.maxAgents).toBe(3);
    const seenByB = (await (await tenantAs(B, "admin")).getTenantSettings({})).settings!;
    expect(seenByB.tenantId).toBe(B);
    expect(seenByB.limits?.maxAgents).toBe(10_000);
    expect(seenByB.overrides?.maxAgents).toBeUndefined();
  });
});

describe("UpdateTenantLimits", () => {
  const T = "settings-limits";

  it("refuses tenant admins, even for their own tenant (PERMISSION_DENIED, operator role required)", async () => {
    const admin = await tenantAs(T, "admin");
    for (const call of [
      () => admin.updateTenantLimits({ tenantId: T, limits: { maxTools: 1 }, updateMask: { paths: ["max_tools"] } }),
      () => admin.setFeatureToggle({ tenantId: T, name: "executions.enabled", enabled: false }),
    ]) {
      const err = await errorOf(call());
      expect(err.code).toBe(Code.PermissionDenied);
      expect(reasonOf(err)).toBe("ROLE_REQUIRED");
    }
    expect((await operator.getTenantSettings({ tenantId: T })).settings?.overrides?.maxTools).toBeUndefined();
  });

  it("sets and clears overrides by update_mask, with the etag guarding against concurrent changes", async () => {
    const before = (await operator.getTenantSettings({ tenantId: T })).settings!;
    const { settings: set } = await operator.updateTenantLimits({
      tenantId: T,
      limits: { maxTools: 5, rateLimitPerSecond: 50, maxAgents: 99 },
      updateMask: { paths: ["max_tools", "rate_limit_per_second"] },
      etag: before.etag,
    });
    // Only masked fields change.
    expect(set?.overrides).toMatchObject({ maxTools: 5, rateLimitPerSecond: 50 });
    expect(set?.overrides?.maxAgents).toBeUndefined();
    expect(set?.limits).toMatchObject({ maxTools: 5, rateLimitPerSecond: 50, maxAgents: 10_000 });
    expect(set?.etag).not.toBe(before.etag);
    expect(set?.updateTime).toBeDefined();

    const stale = await errorOf(
      operator.updateTenantLimits({ tenantId: T, limits: { maxTools: 6 }, updateMask: { paths: ["max_tools"] }, etag: before.etag }),
    );
    expect(stale.code).toBe(Code.Aborted);

    // A masked field left unset drops the override: the default applies again.
    const { settings: cleared } = await operator.updateTenantLimits({
      tenantId: T,
      limits: {},
      updateMask: { paths: ["max_tools"] },
      etag: set!.etag,
    });
    expect(cleared?.overrides?.maxTools).toBeUndefined();
    expect(cleared?.limits?.maxTools).toBe(777);
    expect(cleared?.overrides?.rateLimitPerSecond).toBe(50);
  });

  it("refuses an empty mask, unknown paths and out-of-range values", async () => {
    const cases = [
      { tenantId: T, limits: { maxTools: 1 } },
      { tenantId: T, limits: { maxTools: 1 }, updateMask: { paths: ["tenant_id"] } },
      { tenantId: T, limits: { rateLimitBurst: 0 }, updateMask: { paths: ["rate_limit_burst"] } },
      { tenantId: T, limits: { maxTools: -1 }, updateMask: { paths: ["max_tools"] } },
    ];
    for (const request of cases) {
      expect((await errorOf(operator.updateTenantLimits(request))).code, JSON.stringify(request)).toBe(Code.InvalidArgument);
    }
  });

  it("requires an operator to name a valid tenant", async () => {
    for (const tenantId of ["", "-bad", "x".repeat(65)]) {
      const err = await errorOf(operator.updateTenantLimits({ tenantId, limits: {}, updateMask: { paths: ["max_tools"] } }));
      expect(err.code, tenantId).toBe(Code.InvalidArgument);
    }
    expect((await errorOf(operator.getTenantSettings({}))).code).toBe(Code.InvalidArgument);
  });
});

describe("operators", () => {
  it("reach no tenant data: every other service is PERMISSION_DENIED", async () => {
    const token = await operatorToken();
    const transport = transportOf(s.url, token, A);
    const calls = [
      () => clientOf(ToolService, transport).listTools({}),
      () => clientOf(AgentService, transport).listAgents({}),
      () => clientOf(ExecutionService, transport).listExecutions({}),
    ];
    for (const call of calls) {
      const err = await errorOf(call());
      expect(err.code).toBe(Code.PermissionDenied);
      expect(reasonOf(err)).toBe("OPERATOR_NOT_IN_TENANT");
    }
  });

  it("need the operator role itself: a token with a tenant role and no tenant is UNAUTHENTICATED", async () => {
    const noTenant = await mintToken(new TextEncoder().encode(TEST_SECRET), { tenants: [], roles: ["admin"], subject: "x", ttl: "5m" });
    const err = await errorOf(tenantsAs(s.url, noTenant).updateTenantLimits({ tenantId: A, limits: {}, updateMask: { paths: ["max_tools"] } }));
    expect(err.code).toBe(Code.Unauthenticated);
  });
});

describe("feature toggles", () => {
  const T = "settings-toggles";
  const OTHER = "settings-toggles-other";

  async function echoAgent(tenant: string) {
    const agents = clientOf(AgentService, transportOf(s.url, await s.token(tenant, ["editor"])));
    const { agent } = await agents.createAgent({ agent: { name: `echo-${randomUUID()}`, role: "test" }, templateId: "builtin-echo" });
    return { id: agent!.id, executions: clientOf(ExecutionService, transportOf(s.url, await s.token(tenant, ["editor"]))) };
  }

  async function expectDisabled(call: Promise<unknown>, toggle: string) {
    const err = await errorOf(call);
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(reasonOf(err)).toBe("FEATURE_DISABLED");
    expect(err.findDetails(PreconditionFailureSchema)[0]?.violations[0]?.subject).toBe(`tenants/${T}/features/${toggle}`);
  }

  async function streamed(executions: Awaited<ReturnType<typeof echoAgent>>["executions"], agentId: string) {
    const events = [];
    for await (const res of executions.streamExecuteAgent({ input: { agentId, prompt: "hi" } })) events.push(res.event);
    return events;
  }

  it("executions.enabled off stops ExecuteAgent and StreamExecuteAgent for that tenant only, and back on restores them", async () => {
    const mine = await echoAgent(T);
    const other = await echoAgent(OTHER);

    const { featureToggle } = await operator.setFeatureToggle({ tenantId: T, name: "executions.enabled", enabled: false });
    expect(featureToggle).toMatchObject({ name: "executions.enabled", enabled: false, defaultEnabled: true, overridden: true });

    await expectDisabled(mine.executions.executeAgent({ input: { agentId: mine.id, prompt: "hi" } }), "executions.enabled");
    await expectDisabled(streamed(mine.executions, mine.id), "executions.enabled");
    const { executions: none } = await mine.executions.listExecutions({});
    expect(none).toEqual([]);

    const { execution } = await other.executions.executeAgent({ input: { agentId: other.id, prompt: "hi" } });
    expect(execution?.status).toBe(ExecutionStatus.SUCCEEDED);

    // The tenant sees the toggle off.
    const { settings } = await (await tenantAs(T, "viewer")).getTenantSettings({});
    expect(settings?.featureToggles.find((t) => t.name === "executions.enabled")).toMatchObject({ enabled: false, overridden: true });

    // Unset: back to the default (on).
    const { featureToggle: reset } = await operator.setFeatureToggle({ tenantId: T, name: "executions.enabled" });
    expect(reset).toMatchObject({ enabled: true, overridden: false });
    const { execution: again } = await mine.executions.executeAgent({ input: { agentId: mine.id, prompt: "hi" } });
    expect(again?.status).toBe(ExecutionStatus.SUCCEEDED);
  });

  it("executions.streaming off stops only StreamExecuteAgent", async () => {
    const mine = await echoAgent(T);
    await operator.setFeatureToggle({ tenantId: T, name: "executions.streaming", enabled: false });
    try {
      await expectDisabled(streamed(mine.executions, mine.id), "executions.streaming");
      const { execution } = await mine.executions.executeAgent({ input: { agentId: mine.id, prompt: "hi" } });
      expect(execution?.status).toBe(ExecutionStatus.SUCCEEDED);
    } finally {
      await operator.setFeatureToggle({ tenantId: T, name: "executions.streaming", enabled: true });
    }
    expect((await streamed(mine.executions, mine.id)).length).toBeGreaterThan(0);
  });

  it("refuses an unknown toggle name with INVALID_ARGUMENT", async () => {
    const err = await errorOf(operator.setFeatureToggle({ tenantId: T, name: "executions.enable", enabled: false }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(reasonOf(err)).toBe("UNKNOWN_FEATURE_TOGGLE");
  });
});
