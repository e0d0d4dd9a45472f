// Benchmark of fairness under the per-tenant rate limit: the p99 latency of a
// quiet tenant B alone, then while tenant A floods the service, and their
// ratio. The server is a separate process (src/main.ts) so that neither
// client's work is counted as the server's; A floods from another process,
// at a lower CPU priority (nice 10) so that on a small machine the load
// generator does not take the cores the server and B's client need (in
// production it runs elsewhere); B calls at a steady pace from this one.
// Everything stays on 127.0.0.1 and stops by itself.
//
//   npm run bench:fairness                          # embedded PGlite, buckets in the database
//   BENCH_DATABASE_URL=postgres://… npm run bench:fairness
//   BENCH_REDIS_URL=redis://127.0.0.1:6379 npm run bench:fairness   # buckets in Redis
//
// Options (environment): BENCH_SECONDS (30, each phase), BENCH_QUIET_RPS (50,
// B's pace: within its limit), BENCH_FLOOD_RPS (500: A sends this many calls
// per second whatever the answers; RetryInfo ignored), BENCH_FLOOD_LIMITS
// ("25,100": one flood per value, each by a fresh tenant A whose rate limit
// an operator sets to it, burst twice that), BENCH_FLOOD_CONCURRENCY (256,
// most of A's calls in flight), BENCH_GRPC_PATH (the server's GRPC_PATH:
// grpc-js or connect), BENCH_SERVER_NODE_FLAGS (Node flags for the
// server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"; its stdout is then
// shown). With BENCH_FLOOD_RPS=0 A instead keeps BENCH_FLOOD_CONCURRENCY
// calls in flight, each sent again as soon as it is answered (closed loop).
//
// B is measured once A has spent its burst (its first refusal, plus 1 s):
// the burst is admitted work the limit allows; the moment A spends it is
// printed apart. A refused call costs the server little (it is refused
// before it is read: src/pipeline/admission/early-admission.ts); what A is admitted is
// full work, so the ratio grows with A's limit, not with its flood.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TenantService } from "../gen/agentplatform/v1/tenant_service_pb.js";
import { ToolService } from "../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../src/auth/tokens.ts";
import { startBenchServer } from "./server-process.ts";

const SECRET = "bench-fairness-secret-0123456789abcdef0123456789";
// 30 s: at 50 calls/s a p99 over fewer calls is made by a handful of them.
const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const QUIET_RPS = Number(process.env.BENCH_QUIET_RPS ?? 50);
const FLOOD_RPS = Number(process.env.BENCH_FLOOD_RPS ?? 500);
const FLOOD_CONCURRENCY = Number(process.env.BENCH_FLOOD_CONCURRENCY ?? 256);
const FLOOD_LIMITS = (process.env.BENCH_FLOOD_LIMITS ?? "25,100").split(",").map(Number);

interface FloodJob {
  url: string;
  token: string;
  toolId: string;
  /** Calls per second (open loop), or 0 for a closed loop of `concurrency` calls. */
  rps: number;
  concurrency: number;
}

/** A's calls once its burst was spent (the first refusal) until it was told to stop. */
interface FloodResult {
  admitted: number;
  refused: number;
  seconds: number;
}

function clientOf(url: string, token: string) {
  return createClient(
    ToolService,
    createGrpcTransport({
      baseUrl: url,
      interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    }),
  );
}

/**
 * Tenant A until its stdin ends: `rps` calls a second (at most `concurrency`
 * in flight), or a closed loop of `concurrency`. Says "started" on stdout at
 * its first call and "spent" at its first refusal (its burst is gone), then
 * its result as JSON once stopped.
 */
async function flood(job: FloodJob): Promise<FloodResult> {
  const tools = clientOf(job.url, job.token);
  let stopped = false;
  process.stdin.on("data", () => {}).once("end", () => (stopped = true));
  let admitted = 0;
  let refused = 0;
  let inFlight = 0;
  let spentAt: { time: number; admitted: number; refused: number } | undefined;
  const call = async () => {
    inFlight++;
    try {
      await tools.getTool({ toolId: job.toolId });
      admitted++;
    } catch (err) {
      if (ConnectError.from(err).code !== Code.ResourceExhausted) throw err;
      refused++;
      if (!spentAt) {
        spentAt = { time: performance.now(), admitted, refused };
        process.stdout.write("spent\n");
      }
    } finally {
      inFlight--;
    }
  };
  process.stdout.write("started\n");
  const started = performance.now();
  if (job.rps > 0) {
    const calls: Promise<void>[] = [];
    for (let sent = 0; !stopped; ) {
      const due = Math.floor(((performance.now() - started) / 1000) * job.rps);
      for (; sent < due; sent++) if (inFlight < job.concurrency) calls.push(call());
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await Promise.all(calls);
  } else {
    await Promise.all(
      Array.from({ length: job.concurrency }, async () => {
        while (!stopped) await call();
      }),
    );
  }
  const from = spentAt ?? { time: started, admitted: 0, refused: 0 };
  return { admitted: admitted - from.admitted, refused: refused - from.refused, seconds: (performance.now() - from.time) / 1000 };
}

// The flooding process is this file again, with its job in the environment.
const FLOOD_JOB = "BENCH_FAIRNESS_FLOOD_JOB";
if (process.env[FLOOD_JOB]) {
  process.stdout.write(`${JSON.stringify(await flood(JSON.parse(process.env[FLOOD_JOB]) as FloodJob))}\n`);
  process.exit(0);
} else {
  await main();
}

/** The flooding process: when it started, when its burst was spent, and how to stop it. */
interface Flooding {
  started: Promise<void>;
  spent: Promise<void>;
  stop(): Promise<FloodResult>;
}

/** Runs `job` in a process of its own at nice 10. */
function floodProcess(job: FloodJob): Flooding {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    env: { ...process.env, [FLOOD_JOB]: JSON.stringify(job) },
    stdio: ["pipe", "pipe", "inherit"],
  });
  try {
    setPriority(child.pid!, 10);
  } catch {
    // not permitted here: it runs at the same priority
  }
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", resolve);
  });
  const marker = (word: string) =>
    new Promise<void>((resolve, reject) => {
      let out = "";
      const onData = (chunk: Buffer) => {
        out += chunk.toString();
        if (out.split("\n").includes(word)) {
          child.stdout!.off("data", onData);
          resolve();
        }
      };
      child.stdout!.on("data", onData);
      void exited.then(() => reject(new Error(`the flooding process exited before saying "${word}"`)));
    });
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  return {
    started: marker("started"),
    spent: marker("spent"),
    async stop() {
      child.stdin!.end();
      const code = await exited;
      if (code !== 0) throw new Error(`the flooding process exited with ${code}`);
      return JSON.parse(out.trim().split("\n").at(-1)!) as FloodResult;
    },
  };
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "agent-platform-fairness-"));
  const env: Record<string, string> = {
    JWT_SECRET: SECRET,
    DATA_DIR: dataDir,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "error",
    ...(process.env.BENCH_DATABASE_URL ? { DATABASE_URL: process.env.BENCH_DATABASE_URL } : {}),
    ...(process.env.BENCH_REDIS_URL ? { REDIS_URL: process.env.BENCH_REDIS_URL } : {}),
    // Which server answers gRPC over h2c, to compare the two paths.
    ...(process.env.BENCH_GRPC_PATH ? { GRPC_PATH: process.env.BENCH_GRPC_PATH } : {}),
  };
  const nodeFlags = process.env.BENCH_SERVER_NODE_FLAGS?.split(" ").filter(Boolean) ?? [];
  const server = await startBenchServer(env, { nodeFlags, stdout: nodeFlags.length > 0 ? "inherit" : "ignore" });
  const url = server.url;
  try {
    const run = Date.now();
    const secret = new TextEncoder().encode(SECRET);
    const tokenOf = (tenant: string) => mintToken(secret, { tenants: [tenant], roles: ["editor"], subject: "bench", ttl: "1h" });
    const quiet = clientOf(url, await tokenOf(`quiet-${run}`));
    const { tool: toolB } = await quiet.createTool({ tool: { name: "quiet", description: "bench" } });
    const operator = await mintToken(secret, { tenants: [], roles: ["operator"], subject: "bench-operator", ttl: "1h" });
    const tenants = createClient(
      TenantService,
      createGrpcTransport({ baseUrl: url, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${operator}`), next(req))] }),
    );

    console.log(
      `driver=${process.env.BENCH_DATABASE_URL ? "postgresql" : "pglite"} buckets=${process.env.BENCH_REDIS_URL ? "redis" : "database"}  ` +
        `B: GetTool at ${QUIET_RPS} rps (default limit 100 rps, burst 200)  ` +
        `A: GetTool, ${FLOOD_RPS > 0 ? `${FLOOD_RPS} rps (at most ${FLOOD_CONCURRENCY} in flight)` : `closed loop of ${FLOOD_CONCURRENCY}`}  ${SECONDS} s per phase`,
    );
    await paced(quiet, toolB!.id, 2); // warm-up
    const alone = summary(await paced(quiet, toolB!.id, SECONDS));
    console.log(`B alone                         p50 ${alone.p50} ms  p99 ${alone.p99} ms  (${alone.n} calls, ${alone.failed} failed)`);

    for (const limit of FLOOD_LIMITS) {
      // A fresh tenant A per limit, set as a platform operator would.
      const tenantA = `flood-${run}-${limit}`;
      const tokenA = await tokenOf(tenantA);
      const { tool: toolA } = await clientOf(url, tokenA).createTool({ tool: { name: "flood", description: "bench" } });
      await tenants.updateTenantLimits({
        tenantId: tenantA,
        limits: { rateLimitPerSecond: limit, rateLimitBurst: 2 * limit },
        updateMask: { paths: ["rate_limit_per_second", "rate_limit_burst"] },
      });
      console.log(`A limited to ${limit} rps (burst ${2 * limit}):`);
      const flooding = floodProcess({ url, token: tokenA, toolId: toolA!.id, rps: FLOOD_RPS, concurrency: FLOOD_CONCURRENCY });
      await flooding.started;
      // A's burst is admitted work (the limit lets a tenant spend it at
      // once); shown, but the flood is what comes after it.
      const settled = flooding.spent.then(() => new Promise((resolve) => setTimeout(resolve, 1000)));
      const burst = summary(await paced(quiet, toolB!.id, settled));
      console.log(`  B while A spends its burst     p50 ${burst.p50} ms  p99 ${burst.p99} ms  (${burst.n} calls, until 1 s after A's first refusal)`);
      const during = summary(await paced(quiet, toolB!.id, SECONDS));
      const a = await flooding.stop();
      console.log(`  B while A floods               p50 ${during.p50} ms  p99 ${during.p99} ms  (${during.n} calls, ${during.failed} failed)`);
      console.log(
        `  A after its burst: ${Math.round((a.admitted + a.refused) / a.seconds)} calls/s sent, ${Math.round(a.admitted / a.seconds)}/s admitted, ` +
          `${Math.round(a.refused / a.seconds)}/s refused (RESOURCE_EXHAUSTED)`,
      );
      console.log(`  p99 ratio (flood / alone) ${(Number(during.p99) / Number(alone.p99)).toFixed(2)}  (target ≤ 2)`);
    }
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** B: one GetTool every 1/QUIET_RPS s for `seconds` (or until `until` settles), each timed on its own (open loop). */
async function paced(tools: ReturnType<typeof clientOf>, toolId: string, until: number | Promise<unknown>) {
  const latencies: number[] = [];
  let failed = 0;
  const calls: Promise<void>[] = [];
  const interval = 1000 / QUIET_RPS;
  const start = performance.now();
  let over = false;
  if (typeof until !== "number") void until.then(() => (over = true));
  for (let i = 0; typeof until === "number" ? i < until * QUIET_RPS : !over; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    calls.push(
      (async () => {
        const t0 = performance.now();
        try {
          await tools.getTool({ toolId });
          latencies.push(performance.now() - t0);
        } catch {
          failed++;
        }
      })(),
    );
  }
  await Promise.all(calls);
  return { latencies, failed };
}

function summary({ latencies, failed }: { latencies: number[]; failed: number }) {
  const sorted = [...latencies].sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(2);
  return { p50: pct(50), p99: pct(99), n: sorted.length, failed };
}
