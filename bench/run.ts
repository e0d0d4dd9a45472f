// Benchmarks: latency and throughput of representative RPCs against a real
// server on loopback, over gRPC (HTTP/2). Bounded in count and time.
//   npm run bench                      # embedded PGlite (in memory)
//   BENCH_DATABASE_URL=postgres://… npm run bench
//   BENCH_RLS=off …                    # the ORM filter alone: connects as the owner (which must be a
//                                      # superuser or BYPASSRLS) and sets no tenant per transaction
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentType } from "../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../gen/agentplatform/v1/agent_service_pb.js";
import { ToolService } from "../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../src/auth/tokens.ts";
import { loadConfig } from "../src/config.ts";
import { migrateUp, openDatabase } from "../src/database.ts";
import { createLogger } from "../src/log.ts";
import { createAppServer } from "../src/server.ts";

const SECRET = "bench-secret-0123456789abcdef0123456789";
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);

// RATE_LIMIT_PER_SECOND=0: no tenant rate limit; this measures the RPCs themselves (bench/fairness.ts measures the limit).
const config = loadConfig({ JWT_SECRET: SECRET, HOST: "127.0.0.1", PORT: "0", DB_POOL_MAX: "10", RATE_LIMIT_PER_SECOND: "0" });
const rowLevelSecurity = process.env.BENCH_RLS !== "off";
const orm = await openDatabase({ url: process.env.BENCH_DATABASE_URL, dataDir: "memory://", poolMax: 10, rowLevelSecurity });
await migrateUp(orm);
const server = createAppServer({ config, orm, logger: createLogger("error") });
const port = await server.listen(0, "127.0.0.1");
server.health.setServing(true);

const token = await mintToken(new TextEncoder().encode(SECRET), {
  tenants: [`bench-${Date.now()}`],
  roles: ["editor"],
  subject: "bench",
  ttl: "1h",
});
const transport = createGrpcTransport({
  baseUrl: `http://127.0.0.1:${port}`,
  interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
});
const tools = createClient(ToolService, transport);
const agents = createClient(AgentService, transport);

/** Runs `call` REQUESTS times with CONCURRENCY in flight; prints latency percentiles. */
async function measure(name: string, call: (i: number) => Promise<unknown>): Promise<void> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        const i = next++;
        const t0 = performance.now();
        await call(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!.toFixed(2);
  console.log(
    `${name.padEnd(22)} ${String(Math.round(REQUESTS / seconds)).padStart(6)} req/s  p50 ${pct(50)} ms  p95 ${pct(95)} ms  p99 ${pct(99)} ms`,
  );
}

console.log(
  `driver=${process.env.BENCH_DATABASE_URL ? "postgresql" : "pglite"} rls=${rowLevelSecurity ? "on" : "off"} requests=${REQUESTS} concurrency=${CONCURRENCY}`,
);
const ids: string[] = [];
await measure("CreateTool", async (i) => {
  const { tool } = await tools.createTool({ tool: { name: `tool-${i}`, description: "bench" } });
  ids.push(tool!.id);
});
await measure("GetTool", (i) => tools.getTool({ toolId: ids[i % ids.length]! }));
await measure("ListTools (50)", () => tools.listTools({ pageSize: 50 }));
await measure("CreateAgent (+v1, 2 tools)", (i) =>
  agents.createAgent({ agent: { name: `agent-${i}`, role: "bench", agentType: AgentType.WEBHOOK, toolIds: [ids[0]!, ids[1]!] } }),
);
await measure("ListAgents (50)", () => agents.listAgents({ pageSize: 50 }));
console.log(`rss ${Math.round(process.memoryUsage().rss / 1024 / 1024)} MiB (server and client in one process)`);

await server.shutdown();
await orm.close();
