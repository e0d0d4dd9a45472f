// npm run bench: the real server (src/main.ts) in a process of its own,
// seeded through its API, loaded row by row from another process over the
// wire, next to a bare grpc-js ceiling. One table; each run is appended to
// bench/history.tsv. See README "Benchmarks".
//
//   npm run bench                                   # PGlite in a temp DATA_DIR
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench
//   BENCH_PG=own npm run bench                      # a throwaway PostgreSQL 15 with pg_stat_statements
//   BENCH_SECONDS=2 BENCH_ROWS=GetAgent,ListAgents npm run bench
//   BENCH_DRIVER=node npm run bench                 # the own generator for every row, h2load for none
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBenchServer } from "./server-process.ts";
import { startCeiling } from "./lib/ceiling.ts";
import { cleanUp, cleanUpOnSignals, onCleanup } from "./lib/cleanup.ts";
import { drive, PG_SETTLE_MS, withPgCounters } from "./lib/drive.ts";
import { checkGrpcStatus, ensureH2load, runH2load } from "./lib/h2load.ts";
import { appendHistory, commitId } from "./lib/history.ts";
import { readOptions } from "./lib/options.ts";
import { startOwnPostgres } from "./lib/own-postgres.ts";
import { openPgStats, recreateDatabase } from "./lib/pg-stats.ts";
import { rssMiB, sampleRss } from "./lib/proc-stats.ts";
import { pickRows } from "./lib/rows.ts";
import { seed } from "./lib/seed.ts";
import { figures, header, line, type RowFigures } from "./lib/table.ts";
import { BENCH_SECRET } from "./lib/token.ts";

const DATABASE = "agent_platform_bench";
const RSS_TARGET_MIB = 250;

const o = readOptions();
// The code measured is the code loaded now: edits made while the bench runs are not in its figures.
const commit = commitId();
cleanUpOnSignals();
const log = (s: string) => console.error(`bench: ${s}`);

try {
  // ------------------------------------------------------------ database --
  let adminUrl = o.databaseUrl;
  let driver = adminUrl ? "postgresql" : "pglite";
  if (o.ownPostgres) {
    log("starting a throwaway PostgreSQL 15 cluster with pg_stat_statements");
    const own = await startOwnPostgres();
    onCleanup("own PostgreSQL", () => own.stop());
    adminUrl = own.url;
    driver = "postgresql-own";
  }
  const dataDir = mkdtempSync(join(tmpdir(), "agent-platform-bench-"));
  onCleanup("data dir", () => rmSync(dataDir, { recursive: true, force: true }));
  let databaseUrl: string | undefined;
  let stats: Awaited<ReturnType<typeof openPgStats>> | undefined;
  if (adminUrl) {
    databaseUrl = await recreateDatabase(adminUrl, DATABASE);
    stats = await openPgStats(adminUrl, DATABASE);
    onCleanup("stats connection", () => stats!.close());
  }

  // -------------------------------------------------------------- server --
  const server = await startBenchServer({
    JWT_SECRET: BENCH_SECRET,
    DATA_DIR: dataDir,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    LOG_LEVEL: "error",
    // No tenant rate limit or quota: the bench measures the calls (bench/fairness.ts measures the limit).
    RATE_LIMIT_PER_SECOND: "0",
    QUOTA_MAX_AGENTS: "100000000",
    QUOTA_MAX_TOOLS: "100000000",
    QUOTA_MAX_CREDENTIALS: "100000000",
    QUOTA_MAX_CONCURRENT_EXECUTIONS: "100000000",
    // No background jobs inside the measured windows: they would count as the calls' transactions.
    DB_PROBE_INTERVAL_MS: "0",
    PURGE_INTERVAL_MS: "0",
    RETENTION_INTERVAL_MS: "0",
    ORPHAN_AFTER_MS: "86400000",
  }, { timeoutMs: 180_000 });
  onCleanup("server", () => server.stop());
  const serverPid = server.child.pid!;
  const rss = sampleRss(serverPid);
  onCleanup("rss sampler", () => rss.stop());
  log(`server pid ${serverPid} at ${server.url} (${driver}); seeding`);

  // ---------------------------------------------------------------- seed --
  const runId = Date.now().toString(36);
  const seeded = await seed(
    server.url,
    runId,
    { tenants: o.tenants, agentsPerTenant: o.agentsPerTenant, toolsPerTenant: o.toolsPerTenant, executions: o.executions },
    log,
  );
  rss.take();
  if (stats) await new Promise((resolve) => setTimeout(resolve, PG_SETTLE_MS));

  // ---------------------------------------------------------------- rows --
  const ceiling = await startCeiling();
  const rows = pickRows(o.rows);
  // h2load costs a tenth of the own generator's CPU per call (measured: 0.02 vs 0.2 ms on the
  // ceiling), which on 2 cores decides how high the ceiling gets.
  const h2loadMissing = o.driver === "node" ? undefined : ensureH2load(log);
  if (h2loadMissing && o.driver === "h2load") throw new Error(h2loadMissing);
  if (h2loadMissing) log(`${h2loadMissing}; using the own generator for every row (the ceiling may be generator-bound)`);
  const useH2load = o.driver !== "node" && !h2loadMissing;
  const warmupMs = Math.min(2_000, Math.max(500, o.seconds * 200));
  console.log(
    `\n${commit}  driver=${driver}  ${o.connections} connections × ${o.streams} streams (Connect/h1: ${o.h1Connections} connections)  ` +
      `${o.seconds} s per row after ${warmupMs / 1000} s warm-up  seed: ${o.tenants} tenants, ${o.tenants * o.agentsPerTenant} agents, ${o.tenants * o.toolsPerTenant} tools`,
  );
  console.log(header());
  const results: RowFigures[] = [];
  let ceilingRps = NaN;
  for (const row of rows) {
    const atCeiling = row.process === "ceiling";
    const url = atCeiling ? ceiling.url : server.url;
    const pid = atCeiling ? ceiling.pid : serverPid;
    const viaH2load = useH2load && row.single === true;
    let sample = "";
    if (viaH2load) {
      // h2load cannot see trailers: a sample through the own generator checks grpc-status.
      const counted = await checkGrpcStatus(url, row.path, row.build(seeded, runId)(0));
      sample = Object.entries(counted).map(([status, n]) => `${n}× grpc-status ${status}`).join(", ");
    }
    const measured = await withPgCounters(
      () =>
        viaH2load
          ? runH2load(
              { url, path: row.path, call: row.build(seeded, runId)(0), connections: o.connections, streams: o.streams, warmupMs, measureMs: o.seconds * 1000 },
              pid,
            )
          : drive(
              {
                row: row.name,
                url,
                seed: seeded,
                runId,
                connections: o.connections,
                streams: o.streams,
                h1Connections: o.h1Connections,
                warmupMs,
                measureMs: o.seconds * 1000,
              },
              pid,
            ),
      atCeiling ? undefined : stats?.snapshot,
    );
    const memory = atCeiling ? { max: rssMiB(ceiling.pid), end: rssMiB(ceiling.pid) } : rss.take();
    if (atCeiling) {
      ceilingRps = measured.load.ok / measured.load.seconds;
      await ceiling.stop();
    }
    const f = figures(viaH2load ? { ...row, name: `${row.name} ʰ` } : row, measured, ceilingRps, memory);
    results.push(f);
    console.log(line(f));
    if (sample) console.log(`    h2load counts HTTP status only; grpc-status of a sample of the same call: ${sample}`);
    if (measured.load.firstFailure) console.log(`    first failure: ${measured.load.firstFailure.slice(0, 300)}`);
  }

  // -------------------------------------------------------------- footer --
  const maxRss = rss.overallMax();
  const rssCheck = driver === "pglite" ? "(target applies on PostgreSQL)" : `${maxRss <= RSS_TARGET_MIB ? "✓" : "✗"} ≤${RSS_TARGET_MIB} MiB`;
  console.log(`\nserver RSS max over the run ${maxRss.toFixed(0)} MiB ${rssCheck}`);
  const loadBound = results.filter((f) => f.loadCpuMs >= f.cpuMs * 0.5);
  if (loadBound.length > 0) {
    console.log(
      `load generator CPU per call ≥ half the target's on: ${loadBound.map((f) => f.name).join(", ")}: ` +
        "on 2 cores these rows may be bounded by the generator, not the target",
    );
  }
  if (useH2load) console.log("ʰ: driven by h2load (one connection thread); the other rows by the own node:http2 generator");
  if (!stats) console.log("xact/call, stmt/call: n/a on PGlite (no pg_stat_database); use BENCH_DATABASE_URL or BENCH_PG=own");
  else if (stats.statementsWhyNot) console.log(`stmt/call: n/a: ${stats.statementsWhyNot}`);
  if (o.history) {
    const file = appendHistory({ commit, driver: useH2load ? `${driver}+h2load` : driver, connections: o.connections, streams: o.streams, seconds: o.seconds }, results);
    console.log(`appended to ${file}`);
  }
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
