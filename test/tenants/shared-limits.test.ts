import { randomUUID } from "node:crypto";
import type { ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { clientOf, Code } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import { TEST_CREDENTIAL_KEYS } from "../support/server.ts";
import { freshStore, startMain, type MainProcess, type Store } from "../support/main-process.ts";
import { operatorToken, REDIS_URL, reasonOf, redisUp, tenantsAs, transportOf } from "./support.ts";

/*
 * Two server processes on one PostgreSQL database share the rate-limit
 * buckets (in Redis when REDIS_URL is set, in the database otherwise) and
 * the quotas: the rate both admit together stays within one tenant's limit,
 * where separate counters would admit twice as much.
 */

const SECRET = "shared-limits-secret-0123456789abcdef0123456789";
const RATE = 10;
const BURST = 10;
const WINDOW_MS = 3_000;
const TIMEOUT = 180_000;

const variants = [
  { buckets: "the database", env: {} as Record<string, string>, enabled: onPostgres },
  { buckets: "Redis", env: { REDIS_URL }, enabled: onPostgres && redisUp },
];

describe.each(variants)("two server processes with buckets in $buckets", ({ env, enabled }) => {
  let servers: MainProcess[] = [];
  let store: Store | undefined;
  const run = randomUUID().slice(0, 8);
  const token = (tenant: string) =>
    mintToken(new TextEncoder().encode(SECRET), { tenants: [tenant], roles: ["editor"], subject: "shared", ttl: "10m" });

  beforeAll(async () => {
    if (!enabled) return;
    store = await freshStore(env.REDIS_URL ? "sharedredis" : "sharedpg");
    const common = {
      ...env,
      ...store.env,
      JWT_SECRET: SECRET,
      CREDENTIAL_KEYS: TEST_CREDENTIAL_KEYS,
      RATE_LIMIT_PER_SECOND: String(RATE),
      RATE_LIMIT_BURST: String(BURST),
      LOG_LEVEL: "warn",
      SHUTDOWN_GRACE_MS: "2000",
    };
    // One after the other: the first applies the migrations.
    servers.push(await startMain({ ...common, INSTANCE_ID: `shared-1-${run}` }));
    servers.push(await startMain({ ...common, INSTANCE_ID: `shared-2-${run}` }));
  }, TIMEOUT);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    servers = [];
    await store?.drop();
  }, TIMEOUT);

  it.runIf(enabled)("admit together no more than one tenant's rate allows", { timeout: TIMEOUT }, async () => {
    const tenant = `shared-rate-${run}`;
    const bearer = await token(tenant);
    const clients = servers.map((s) => clientOf(ToolService, transportOf(s.url, bearer)));
    const admitted = [0, 0];
    const refused = [0, 0];
    const started = performance.now();
    // Four callers per server, each calling as fast as answers come, ignoring RetryInfo.
    await Promise.all(
      [0, 1, 0, 1, 0, 1, 0, 1].map(async (i) => {
        while (performance.now() - started < WINDOW_MS) {
          try {
            await clients[i]!.listTools({});
            admitted[i]!++;
          } catch (err) {
            const e = err as ConnectError;
            if (e.code !== Code.ResourceExhausted || reasonOf(e) !== "RATE_LIMITED") throw err;
            refused[i]!++;
          }
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const allowed = BURST + RATE * seconds;
    const total = admitted[0]! + admitted[1]!;
    if (process.env.SHARED_LIMITS_VERBOSE) console.log({ admitted, refused, seconds, allowed });
    // Within the shared limit (give or take a token of timing), and far
    // below the 2 × allowed that two separate counters would admit.
    expect(total, `admitted ${admitted} refused ${refused} in ${seconds.toFixed(2)} s`).toBeLessThanOrEqual(Math.ceil(allowed) + 2);
    expect(total).toBeGreaterThanOrEqual(Math.floor(0.8 * allowed));
    // Both processes served and refused.
    for (const i of [0, 1]) {
      expect(admitted[i]).toBeGreaterThan(0);
      expect(refused[i]).toBeGreaterThan(0);
    }
  });

  it.runIf(enabled)("hold a quota across both: of creates at quota-1 on both processes exactly one passes", { timeout: TIMEOUT }, async () => {
    const tenant = `shared-quota-${run}`;
    await tenantsAs(servers[0]!.url, await operatorToken(SECRET)).updateTenantLimits({
      tenantId: tenant,
      // A burst large enough for the calls below: this is about the quota.
      limits: { maxTools: 3, rateLimitBurst: 100 },
      updateMask: { paths: ["max_tools", "rate_limit_burst"] },
    });
    const bearer = await token(tenant);
    const clients = servers.map((s) => clientOf(ToolService, transportOf(s.url, bearer)));
    await clients[0]!.createTool({ tool: { name: "one", description: "d" } });
    await clients[1]!.createTool({ tool: { name: "two", description: "d" } });
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => clients[i % 2]!.createTool({ tool: { name: `race-${i}`, description: "d" } })),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect(reasonOf(r.reason as ConnectError)).toBe("QUOTA_EXCEEDED");
    expect((await clients[1]!.listTools({})).tools).toHaveLength(3);
  });
});
