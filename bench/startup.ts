// npm run bench:startup: how long src/main.ts on embedded PGlite takes from
// spawn to SERVING with a fresh DATA_DIR (first start: database created and
// migrated) and with that same DATA_DIR again, and its RSS once idle.
// Targets (issue #12): first start ≤ 5 s, idle RSS ≤ 300 MiB.
//
// Options (environment): BENCH_IDLE_SECONDS (5): idle time before RSS is read.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBenchServer } from "./server-process.ts";
import { cleanUp, cleanUpOnSignals, onCleanup } from "./lib/cleanup.ts";
import { rssMiB } from "./lib/proc-stats.ts";
import { BENCH_SECRET } from "./lib/token.ts";

const IDLE_SECONDS = Math.min(120, Number(process.env.BENCH_IDLE_SECONDS ?? 5));
const FIRST_START_TARGET_S = 5;
const IDLE_RSS_TARGET_MIB = 300;
const mark = (ok: boolean) => (ok ? "✓" : "✗");

cleanUpOnSignals();
try {
  const dataDir = mkdtempSync(join(tmpdir(), "agent-platform-startup-"));
  onCleanup("data dir", () => rmSync(dataDir, { recursive: true, force: true }));
  const env = { JWT_SECRET: BENCH_SECRET, DATA_DIR: dataDir, LOG_LEVEL: "error" };

  /** Spawn to SERVING, in s (health is polled every 200 ms, so ±0.2 s). */
  async function start() {
    const t0 = performance.now();
    const server = await startBenchServer(env, { timeoutMs: 180_000 });
    const stop = onCleanup("server", () => server.stop());
    return { server, stop, seconds: (performance.now() - t0) / 1000 };
  }

  const first = await start();
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
  const idleRss = rssMiB(first.server.child.pid!);
  await first.stop();
  const second = await start();
  await second.stop();

  console.log(
    `PGlite first start to SERVING (fresh DATA_DIR)   ${first.seconds.toFixed(2)} s   ${mark(first.seconds <= FIRST_START_TARGET_S)} ≤${FIRST_START_TARGET_S} s`,
  );
  console.log(`PGlite start to SERVING (same DATA_DIR again)   ${second.seconds.toFixed(2)} s`);
  console.log(
    `PGlite idle RSS after ${IDLE_SECONDS} s               ${idleRss.toFixed(0)} MiB   ${mark(idleRss <= IDLE_RSS_TARGET_MIB)} ≤${IDLE_RSS_TARGET_MIB} MiB`,
  );
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
