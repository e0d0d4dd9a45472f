// Benchmark of execution history at scale: ListExecutions keyset pages near
// the newest row and ~1 000 000 rows deep, and GetExecutionStats over 1, 7
// and 30 days, through a real server on loopback over gRPC (HTTP/2).
// PostgreSQL only; it inserts BENCH_ROWS executions for one tenant and
// BENCH_OTHER_ROWS for another, spread evenly over the last 60 days.
//
//   BENCH_DATABASE_URL=postgres://… node --import ./scripts/require-node.mjs bench/executions.ts
//
// Options (environment): BENCH_ROWS (1000000), BENCH_OTHER_ROWS (100000),
// BENCH_REPEAT (20 calls per list measurement; stats use a quarter, at least
// 3), BENCH_KEEP_DATA=1 to leave the rows in place (they are deleted at the
// end otherwise). Use a throwaway database: the tables grow by the rows above.
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { EntityManager } from "@mikro-orm/postgresql";
import { AgentService } from "../gen/agentplatform/v1/agent_service_pb.js";
import { ExecutionStatus } from "../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService, StatsBucketSize } from "../gen/agentplatform/v1/execution_service_pb.js";
import { mintToken } from "../src/auth/tokens.ts";
import { createPageTokens } from "../src/common/page-token.ts";
import { loadConfig } from "../src/config.ts";
import { migrateUp, openDatabase } from "../src/database.ts";
import { scopeToTenant } from "../src/db/tenant.ts";
import { createLogger } from "../src/log.ts";
import { createAppServer } from "../src/server.ts";

const url = process.env.BENCH_DATABASE_URL;
if (!url) {
  console.log(
    "bench/executions.ts needs PostgreSQL: set BENCH_DATABASE_URL=postgres://user@host:5432/db (a throwaway database;\n" +
      "it inserts about 1.1 million executions). Nothing was run.",
  );
  process.exit(0);
}

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const OTHER_ROWS = Number(process.env.BENCH_OTHER_ROWS ?? 100_000);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 20);
const STATS_REPEAT = Math.max(3, Math.floor(REPEAT / 4));
const KEEP = process.env.BENCH_KEEP_DATA === "1";
const AGENTS = 10;
const SPAN_MS = 60 * 86_400_000;
const PAGE = 200;
const DEEP_PAGES = 200;
const SECRET = "bench-secret-0123456789abcdef0123456789";

// RATE_LIMIT_PER_SECOND=0: no tenant rate limit; this measures history at scale.
const config = loadConfig({ JWT_SECRET: SECRET, HOST: "127.0.0.1", PORT: "0", DB_POOL_MAX: "10", RATE_LIMIT_PER_SECOND: "0" });
const orm = await openDatabase({ url, dataDir: "", poolMax: 10 });
await migrateUp(orm);
const server = createAppServer({ config, orm, logger: createLogger("error") });
const port = await server.listen(0, "127.0.0.1");
server.health.setServing(true);

const run = Date.now();
const tenants = { big: `bench-exec-${run}`, other: `bench-exec-other-${run}` };

async function clientsFor(tenant: string) {
  const token = await mintToken(new TextEncoder().encode(SECRET), { tenants: [tenant], roles: ["admin"], subject: "bench", ttl: "2h" });
  const transport = createGrpcTransport({
    baseUrl: `http://127.0.0.1:${port}`,
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
  });
  return { agents: createClient(AgentService, transport), executions: createClient(ExecutionService, transport) };
}

/** Creates `n` echo agents through the API; returns their ids. */
async function createAgents(agents: Client<typeof AgentService>, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const { agent } = await agents.createAgent({ agent: { name: `bench-agent-${i}`, role: "bench" }, templateId: "builtin-echo" });
    ids.push(agent!.id);
  }
  return ids;
}

/** Raw SQL within `tenant`, as the service's role: row-level security admits that tenant's rows only. */
function asTenant(tenant: string): EntityManager {
  const em = orm.em.fork() as EntityManager;
  scopeToTenant(em, tenant);
  return em;
}

/**
 * Inserts `rows` executions of `tenant` in statements of 100 000, row i
 * created `i * step` ms before `newest` (millisecond-aligned, as the service
 * writes them), round-robin over `agentIds`, with a mix of statuses,
 * latencies and token counts.
 */
async function bulkInsert(tenant: string, agentIds: string[], rows: number, newest: Date): Promise<void> {
  const step = SPAN_MS / rows;
  const chunk = 100_000;
  for (let from = 0; from < rows; from += chunk) {
    const to = Math.min(rows, from + chunk) - 1;
    const t0 = performance.now();
    await asTenant(tenant).execute(
      `insert into executions (
         id, tenant_id, agent_id, agent_version, parent_execution_id, session_id, status, prompt, input, model, response,
         input_tokens, output_tokens, cost_micros, latency_ms, time_to_first_output_ms, error_code, error_message, error_detail,
         request_id, request_hash, creator, test_model, instance_id, heartbeat_time, create_time, start_time, end_time)
       select gen_random_uuid(), ?, (?::uuid[])[(1 + i % ?)::int], 1, null, 'session-' || (i % 1000),
         s.status, 'bench prompt ' || i, null, 'echo', 'bench response',
         10 + i % 500, 5 + (i * 31) % 800, (10 + i % 500) * 2 + (5 + (i * 31) % 800) * 3,
         case when s.status = 'SUCCEEDED' or s.status = 'FAILED' then 50 + (i * 7919) % 3000 else 30000 end,
         20 + (i * 13) % 200,
         case when s.status = 'SUCCEEDED' then '' else 'UNAVAILABLE' end,
         case when s.status = 'SUCCEEDED' then '' else 'bench failure' end, '',
         null, '', 'bench', true, 'bench', null, t.create_time, t.create_time, t.create_time + interval '1 second'
       from generate_series(?::bigint, ?::bigint) as i
       cross join lateral (select ?::timestamptz - make_interval(secs => floor(i * ?::float8) / 1000) as create_time) as t
       cross join lateral (select case when i % 20 = 0 then 'FAILED' when i % 50 = 1 then 'TIMED_OUT'
                                       when i % 100 = 2 then 'CANCELLED' else 'SUCCEEDED' end as status) as s`,
      [tenant, `{${agentIds.join(",")}}`, agentIds.length, from, to, newest.toISOString(), step],
    );
    process.stdout.write(
      `  ${tenant}: rows ${from}..${to} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
    );
  }
}

/** Calls `call` `times` times one after another; prints p50/p95 (and max) latency. */
async function measure(name: string, times: number, call: () => Promise<unknown>): Promise<void> {
  const latencies: number[] = [];
  await call(); // warm-up, not counted
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    await call();
    latencies.push(performance.now() - t0);
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!.toFixed(1);
  console.log(`${name.padEnd(58)} n=${String(times).padStart(3)}  p50 ${pct(50).padStart(8)} ms  p95 ${pct(95).padStart(8)} ms  max ${latencies.at(-1)!.toFixed(1).padStart(8)} ms`);
}

const big = await clientsFor(tenants.big);
const other = await clientsFor(tenants.other);
const bigAgents = await createAgents(big.agents, AGENTS);
const otherAgents = await createAgents(other.agents, 2);

// Every row ms-aligned and a minute in the past.
const newest = new Date(Math.floor((Date.now() - 60_000) / 1000) * 1000);
const oldest = new Date(newest.getTime() - SPAN_MS);
console.log(`driver=postgresql rows=${ROWS} (+${OTHER_ROWS} in another tenant) over 60 days, ${AGENTS} agents; page=${PAGE}`);
let t0 = performance.now();
await bulkInsert(tenants.big, bigAgents, ROWS, newest);
await bulkInsert(tenants.other, otherAgents, OTHER_ROWS, newest);
const insertSeconds = (performance.now() - t0) / 1000;
t0 = performance.now();
// ANALYZE is the owner's (BENCH_DATABASE_URL's user) to run.
const owner = await openDatabase({ url, dataDir: "", poolMax: 1, rowLevelSecurity: false });
await (owner.em.fork() as EntityManager).execute("analyze executions");
await owner.close();
console.log(`inserted ${ROWS + OTHER_ROWS} rows in ${insertSeconds.toFixed(1)} s (${Math.round((ROWS + OTHER_ROWS) / insertSeconds)} rows/s); analyze ${((performance.now() - t0) / 1000).toFixed(1)} s`);
const [size] = await (orm.em.fork() as EntityManager).execute<{ table: string; indexes: string }[]>(
  "select pg_size_pretty(pg_table_size('executions')) as table, pg_size_pretty(pg_indexes_size('executions')) as indexes",
);
console.log(`executions table ${size?.table}, indexes ${size?.indexes}`);

const list = big.executions;

console.log("\nListExecutions (page_size 200, newest first)");
await measure("first page", REPEAT, () => list.listExecutions({ pageSize: PAGE }));
await measure("first page, one agent", REPEAT, () => list.listExecutions({ pageSize: PAGE, agentId: bigAgents[3]! }));
await measure("first page, status FAILED", REPEAT, () => list.listExecutions({ pageSize: PAGE, statuses: [ExecutionStatus.FAILED] }));

// Follow 200 pages with page tokens, then time the next one.
let token = "";
const walk: number[] = [];
for (let i = 0; i < DEEP_PAGES; i++) {
  const t = performance.now();
  const page = await list.listExecutions({ pageSize: PAGE, pageToken: token });
  walk.push(performance.now() - t);
  token = page.nextPageToken;
}
walk.sort((a, b) => a - b);
console.log(
  `walked ${DEEP_PAGES} pages (${DEEP_PAGES * PAGE} rows) with page tokens: total ${(walk.reduce((a, b) => a + b, 0) / 1000).toFixed(1)} s, ` +
    `per page p50 ${walk[Math.floor(walk.length / 2)]!.toFixed(1)} ms`,
);
const deepToken = token;
await measure(`page ${DEEP_PAGES + 1} (rows ${DEEP_PAGES * PAGE}..${(DEEP_PAGES + 1) * PAGE})`, REPEAT, () =>
  list.listExecutions({ pageSize: PAGE, pageToken: deepToken }),
);

// Near row 1 000 000: end_time just after the oldest ~600 rows; the first
// page of that query starts ~600 rows from the end, its next page ~400.
const tail = timestampFromDate(new Date(oldest.getTime() + Math.ceil((600 * SPAN_MS) / ROWS)));
const tailFirst = await list.listExecutions({ pageSize: PAGE, endTime: tail });
await measure(`first page with end_time near the oldest rows (~row ${ROWS - 600})`, REPEAT, () =>
  list.listExecutions({ pageSize: PAGE, endTime: tail }),
);
await measure(`next page via token (~row ${ROWS - 400})`, REPEAT, () =>
  list.listExecutions({ pageSize: PAGE, endTime: tail, pageToken: tailFirst.nextPageToken }),
);
// Cursors deep in the unfiltered listing, without walking there (the page
// after the cursor of row n holds rows n+1..n+200): the
// cursor of row n (newest first) in a token signed with the server's
// page-token key, exactly as ListExecutions signs its own unfiltered tokens.
const tokens = createPageTokens(config.pageTokenSecret);
const unfiltered = { rpc: "ListExecutions", agentId: "", statuses: [], sessionId: "", model: "" };
async function cursorAt(row: number): Promise<{ createTime: string; id: string }> {
  const [r] = await asTenant(tenants.big).execute<{ create_time: Date; id: string }[]>(
    "select create_time, id from executions where tenant_id = ? order by create_time desc, id desc offset ? limit 1",
    [tenants.big, row - 1],
  );
  return { createTime: new Date(r!.create_time).toISOString(), id: r!.id };
}
for (const row of [Math.floor(ROWS / 2), Math.floor(ROWS * 0.9), ROWS - 400]) {
  const cursor = await cursorAt(row);
  const pageToken = tokens.encode(tenants.big, unfiltered, [cursor.createTime, cursor.id]);
  const page = await list.listExecutions({ pageSize: PAGE, pageToken });
  if (page.executions.length !== PAGE) throw new Error(`the crafted token gave ${page.executions.length} rows, not ${PAGE}`);
  await measure(`page after a cursor at row ${row}, no filter`, REPEAT, () =>
    list.listExecutions({ pageSize: PAGE, pageToken }),
  );
  // The plan of the statement the repository issues for that page (with the tenant policy's condition).
  const plan = await asTenant(tenants.big).execute<{ "QUERY PLAN": string }[]>(
    `explain (analyze, format text) select e0.* from executions as e0
      where e0.tenant_id = ? and (e0.create_time < ? or (e0.create_time = ? and e0.id < ?))
      order by e0.create_time desc, e0.id desc limit ${PAGE + 1}`,
    [tenants.big, cursor.createTime, cursor.createTime, cursor.id],
  );
  const lines = plan.map((l) => l["QUERY PLAN"]);
  const pick = (re: RegExp) => lines.find((l) => re.test(l))?.trim() ?? "";
  console.log(`    plan: ${pick(/Scan/).replace(/\s+\(cost.*$/, "")}; ${pick(/Rows Removed by Filter/) || "no rows filtered"}; ${pick(/Execution Time/)}`);
}
await measure(`first page, other tenant (${OTHER_ROWS} rows)`, REPEAT, () => other.executions.listExecutions({ pageSize: PAGE }));

console.log("\nGetExecutionStats (HOUR buckets, ending now)");
const end = new Date(newest.getTime() + 1000);
for (const days of [1, 7, 30]) {
  const startTime = timestampFromDate(new Date(end.getTime() - days * 86_400_000));
  const endTime = timestampFromDate(end);
  const res = await list.getExecutionStats({ startTime, endTime, bucketSize: StatsBucketSize.HOUR });
  await measure(`${String(days).padStart(2)} days, tenant (${res.total?.count} rows, ${res.buckets.length} buckets)`, STATS_REPEAT, () =>
    list.getExecutionStats({ startTime, endTime, bucketSize: StatsBucketSize.HOUR }),
  );
  const one = await list.getExecutionStats({ startTime, endTime, bucketSize: StatsBucketSize.HOUR, agentId: bigAgents[3]! });
  await measure(`${String(days).padStart(2)} days, one agent (${one.total?.count} rows)`, STATS_REPEAT, () =>
    list.getExecutionStats({ startTime, endTime, bucketSize: StatsBucketSize.HOUR, agentId: bigAgents[3]! }),
  );
}
console.log(`rss ${Math.round(process.memoryUsage().rss / 1024 / 1024)} MiB (server and client in one process)`);

await server.shutdown();
if (!KEEP) {
  t0 = performance.now();
  for (const tenant of Object.values(tenants)) {
    await asTenant(tenant).execute("delete from executions where tenant_id = ?", [tenant]);
    await asTenant(tenant).execute("delete from agents where tenant_id = ?", [tenant]);
  }
  console.log(`\ndeleted the benchmark's rows in ${((performance.now() - t0) / 1000).toFixed(1)} s (BENCH_KEEP_DATA=1 keeps them)`);
}
await orm.close();
