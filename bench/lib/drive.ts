import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { onCleanup } from "./cleanup.ts";
import type { LoadJob } from "./load-process.ts";
import type { LoadMessage, LoadResult } from "./load-result.ts";
import type { PgSnapshot } from "./pg-stats.ts";
import { cpuMs } from "./proc-stats.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
// A backend that goes idle within 1 s of its last report holds its transaction
// counts back for PGSTAT_IDLE_INTERVAL (10 s, PostgreSQL 15 pgstat.c), so the
// counters are read only after the server's connections were idle that long.
export const PG_SETTLE_MS = Number(process.env.BENCH_PG_SETTLE_MS ?? 11_000);

/** What the parent measured around one load run. */
export interface Measured {
  load: LoadResult;
  /** CPU of the loaded process (server or ceiling) in the measured window, in ms; NaN without /proc. */
  targetCpuMs: number;
  /** Database counters over the whole run (warm-up and drain included: compare with load.totalCalls). */
  pg: { transactions: number; statements: number | undefined } | undefined;
}

/**
 * Runs one load run (`run`) and, given `pgSnapshot`, reads the database
 * counters before it and, once settled, after it.
 */
export async function withPgCounters(
  run: () => Promise<Omit<Measured, "pg">>,
  pgSnapshot?: () => Promise<PgSnapshot>,
): Promise<Measured> {
  const before = pgSnapshot && (await pgSnapshot());
  const measured = await run();
  let pg: Measured["pg"];
  if (pgSnapshot && before) {
    await new Promise((resolve) => setTimeout(resolve, PG_SETTLE_MS));
    const after = await pgSnapshot();
    pg = {
      transactions: after.transactions - before.transactions,
      statements: after.statements === undefined || before.statements === undefined ? undefined : after.statements - before.statements,
    };
  }
  return { ...measured, pg };
}

/**
 * Runs one row's load process (load-process.ts) against the process
 * `targetPid` at `job.url` and reads that process's CPU at the window's
 * edges. Bounded: the load process is killed 60 s after its window should
 * have closed.
 */
export async function drive(job: LoadJob, targetPid: number): Promise<Omit<Measured, "pg">> {
  const child = spawn(process.execPath, ["--import", "./scripts/require-node.mjs", "bench/lib/load-process.ts"], {
    cwd: root,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const unregister = onCleanup("load generator", () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), job.warmupMs + job.measureMs + 60_000);
  child.stdin.end(JSON.stringify(job));
  let cpuStart = NaN;
  let targetCpuMs = NaN;
  let load: LoadResult | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    const m = JSON.parse(line) as LoadMessage;
    if (m.event === "window-start") cpuStart = cpuMs(targetPid);
    else if (m.event === "window-end") targetCpuMs = cpuMs(targetPid) - cpuStart;
    else load = m.result;
  }
  const code = await exited;
  clearTimeout(timer);
  await unregister();
  if (!load) throw new Error(`the load generator for ${job.row} exited with ${code} and no result`);
  return { load, targetCpuMs };
}
