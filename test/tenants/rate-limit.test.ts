import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { operatorToken, REDIS_URL, reasonOf, redisUp, retryDelayOf, sleep, tenantsAs, transportOf } from "./support.ts";

/*
 * The per-tenant rate limit (a token bucket): past the burst a call is
 * RESOURCE_EXHAUSTED with RetryInfo (reason RATE_LIMITED), and admitted
 * again after the delay; other tenants are not affected; health, reflection
 * and operators are not limited. The same with the buckets in the database
 * and in Redis.
 */

const RATE = 4;
const BURST = 3;

const stores = [
  { store: "the database", env: {} as Record<string, string> },
  ...(redisUp ? [{ store: "Redis", env: { REDIS_URL } }] : []),
];

describe.each(stores)("the rate limit with buckets in $store", ({ env }) => {
  let s: TestServer;
  // Unique per run: Redis keeps buckets across test runs.
  const run = randomUUID().slice(0, 8);
  const tenant = (name: string) => `rl-${name}-${run}`;

  beforeAll(async () => {
    s = await startTestServer({ ...env, RATE_LIMIT_PER_SECOND: String(RATE), RATE_LIMIT_BURST: String(BURST) });
  });
  afterAll(() => s?.close());

  const toolsOf = async (t: string) => clientOf(ToolService, transportOf(s.url, await s.token(t, ["editor"])));

  /**
   * Calls until one is refused; returns how many were admitted, the refusal,
   * and the most a bucket of `burst` may admit in the time that took.
   */
  async function exhaust(tools: Awaited<ReturnType<typeof toolsOf>>, burst = BURST, most = 100) {
    let admitted = 0;
    const started = performance.now();
    for (let i = 0; i < most; i++) {
      try {
        await tools.listTools({});
        admitted++;
      } catch (err) {
        const most = burst + Math.floor((RATE * (performance.now() - started)) / 1000);
        return { admitted, err: await errorOf(Promise.reject(err)), most };
      }
    }
    throw new Error(`no call refused in ${most}`);
  }

  it("admits the burst, then refuses with RESOURCE_EXHAUSTED, RetryInfo and RATE_LIMITED, and admits again after the delay", async () => {
    const tools = await toolsOf(tenant("a"));
    const { admitted, err, most } = await exhaust(tools);
    // The burst, plus what refilled while the calls ran.
    expect(admitted).toBeGreaterThanOrEqual(BURST);
    expect(admitted).toBeLessThanOrEqual(most);
    expect(Code[err.code]).toBe(Code[Code.ResourceExhausted]);
    expect(reasonOf(err)).toBe("RATE_LIMITED");
    const delay = retryDelayOf(err)!;
    expect(delay).toBeGreaterThan(0);
    expect(delay).toBeLessThanOrEqual(Math.ceil(1000 / RATE));

    await sleep(delay);
    await tools.listTools({});
  });

  it("refuses before validating: a limited tenant's invalid request is RESOURCE_EXHAUSTED, not INVALID_ARGUMENT", async () => {
    const t = tenant("b");
    await tenantsAs(s.url, await operatorToken()).updateTenantLimits({
      tenantId: t,
      limits: { rateLimitPerSecond: 1, rateLimitBurst: 1 },
      updateMask: { paths: ["rate_limit_per_second", "rate_limit_burst"] },
    });
    const tools = await toolsOf(t);
    // Of five invalid calls at once one token is there: one is validated (and
    // refused as invalid), the others are refused by the limit first.
    const codes = await Promise.all(
      Array.from({ length: 5 }, async () => Code[(await errorOf(tools.getTool({ toolId: "not-a-uuid" }))).code]),
    );
    expect(codes.filter((c) => c === Code[Code.ResourceExhausted]).length).toBeGreaterThanOrEqual(4);
  });

  it("leaves other tenants alone while one is limited", async () => {
    const flooding = await toolsOf(tenant("c"));
    const quiet = await toolsOf(tenant("d"));
    await exhaust(flooding);
    // Right after its refusal the flooding tenant is still refused, while the
    // quiet one is admitted its whole burst at the same moment.
    const [refused, ...admitted] = await Promise.allSettled([
      flooding.listTools({}),
      ...Array.from({ length: BURST }, () => quiet.listTools({})),
    ]);
    expect(refused?.status).toBe("rejected");
    expect(Code[(await errorOf(Promise.reject((refused as PromiseRejectedResult).reason))).code]).toBe(Code[Code.ResourceExhausted]);
    expect(admitted.map((r) => r.status)).toEqual(Array(BURST).fill("fulfilled"));
  });

  it("does not limit health checks or operators", async () => {
    const health = clientOf(Health, connectJson(s.url));
    for (let i = 0; i < 3 * BURST; i++) {
      expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
    const t = tenant("e");
    await exhaust(await toolsOf(t));
    const operator = tenantsAs(s.url, await operatorToken());
    for (let i = 0; i < 3 * BURST; i++) await operator.getTenantSettings({ tenantId: t });
  });

  it("applies a tenant's override: an operator raises the burst and it holds at once", async () => {
    const t = tenant("f");
    const operator = tenantsAs(s.url, await operatorToken());
    await operator.updateTenantLimits({
      tenantId: t,
      limits: { rateLimitBurst: 3 * BURST, rateLimitPerSecond: RATE },
      updateMask: { paths: ["rate_limit_burst", "rate_limit_per_second"] },
    });
    const { admitted, err, most } = await exhaust(await toolsOf(t), 3 * BURST);
    expect(admitted).toBeGreaterThanOrEqual(3 * BURST);
    expect(admitted).toBeLessThanOrEqual(most);
    // The tenant sees the limit it is held to (once it may call again).
    await sleep(retryDelayOf(err)!);
    const { settings } = await tenantsAs(s.url, await s.token(t, ["viewer"])).getTenantSettings({});
    expect(settings?.limits).toMatchObject({ rateLimitBurst: 3 * BURST, rateLimitPerSecond: RATE });
  });
});
