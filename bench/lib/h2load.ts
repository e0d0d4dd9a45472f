import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { onCleanup } from "./cleanup.ts";
import { grpcFire, grpcFrame } from "./grpc-h2.ts";
import { createHistogram } from "./histogram.ts";
import type { LoadResult } from "./load-result.ts";
import type { EncodedCall } from "./rows.ts";
import { cpuMs } from "./proc-stats.ts";

/**
 * Makes sure h2load (Debian's nghttp2-client) is there: installs it with
 * apt-get when running as root; otherwise returns why not.
 */
export function ensureH2load(log: (s: string) => void): string | undefined {
  if (spawnSync("h2load", ["--version"]).status === 0) return undefined;
  if (userInfo().uid !== 0) return "h2load is missing: install it with `apt-get install -y nghttp2-client` (as root)";
  log("installing nghttp2-client for h2load");
  try {
    execFileSync("apt-get", ["install", "-y", "-qq", "nghttp2-client"], { stdio: "ignore" });
  } catch {
    execFileSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
    execFileSync("apt-get", ["install", "-y", "-qq", "nghttp2-client"], { stdio: "ignore" });
  }
  return spawnSync("h2load", ["--version"]).status === 0 ? undefined : "apt-get install nghttp2-client did not give an h2load";
}

/**
 * Sends `n` calls one after another with the own generator and counts their
 * grpc-status: h2load sees HTTP 200 only (no trailers), so this sample is what
 * says the calls h2load counts as succeeded really are.
 */
export async function checkGrpcStatus(url: string, path: string, call: EncodedCall, n = 20): Promise<Record<string, number>> {
  const frame = grpcFrame(call.body);
  const { fire, close } = await grpcFire(url, path, 1, () => ({ frame, token: call.token }));
  const counted: Record<string, number> = {};
  let left = n;
  await new Promise<void>((resolve) => {
    const one = () =>
      fire(0, 0, (outcome) => {
        counted[outcome] = (counted[outcome] ?? 0) + 1;
        if (--left > 0) one();
        else resolve();
      });
    one();
  });
  close();
  return counted;
}

/** One h2load run of a single repeated call; same result shape as the own generator's. */
export async function runH2load(
  o: { url: string; path: string; call: EncodedCall; connections: number; streams: number; warmupMs: number; measureMs: number },
  targetPid: number,
): Promise<{ load: LoadResult; targetCpuMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), "agent-platform-h2load-"));
  try {
    writeFileSync(join(dir, "body"), grpcFrame(o.call.body));
    const args = [
      `${o.url}${o.path}`,
      "-c", String(o.connections),
      "-m", String(o.streams),
      "-t", "1",
      "--warm-up-time", `${o.warmupMs}ms`,
      "-D", `${o.measureMs}ms`,
      "-d", join(dir, "body"),
      "-H", "content-type: application/grpc",
      "-H", "te: trailers",
      ...(o.call.token ? ["-H", `authorization: Bearer ${o.call.token}`] : []),
      "--log-file", join(dir, "log"),
    ];
    const child = spawn("h2load", args, { stdio: ["ignore", "pipe", "pipe"] });
    const unregister = onCleanup("h2load", () => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), o.warmupMs + o.measureMs + 60_000);
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    // The window by the clock: h2load measures from the end of its warm-up.
    let target0 = NaN;
    let load0 = NaN;
    let targetCpuMs = NaN;
    let loadCpuMs = NaN;
    setTimeout(() => {
      target0 = cpuMs(targetPid);
      load0 = cpuMs(child.pid!);
    }, o.warmupMs).unref();
    setTimeout(() => {
      targetCpuMs = cpuMs(targetPid) - target0;
      loadCpuMs = cpuMs(child.pid!) - load0;
    }, o.warmupMs + o.measureMs).unref();
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    clearTimeout(killer);
    await unregister();
    if (code !== 0) throw new Error(`h2load exited with ${code}: ${out.slice(-2000)}`);
    // "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout"
    const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
    // h2load's counts and req/s cover the measurement only ("finished in" includes the warm-up).
    const seconds = o.measureMs / 1000;
    const ok = Number(m?.[4] ?? 0);
    const failed = Number(m?.[5] ?? 0) + Number(m?.[6] ?? 0);
    const histogram = createHistogram();
    const outcomes: Record<string, number> = {};
    for (const row of readFileSync(join(dir, "log"), "utf8").split("\n")) {
      const [start, status, micros] = row.split("\t");
      if (!micros) continue;
      outcomes[`http-${status}`] = (outcomes[`http-${status}`] ?? 0) + 1;
      // The log holds the measured calls only (as many rows as "done"), whatever their start.
      if (Number(start) > 0) histogram.record(Number(micros) / 1000);
    }
    return {
      load: {
        seconds,
        ok,
        failed,
        outcomes,
        firstFailure: failed > 0 ? `h2load: ${failed} failed or errored (HTTP)` : undefined,
        p50: histogram.percentile(50),
        p99: histogram.percentile(99),
        loadCpuMs,
        // The database counters include calls h2load does not count: its warm-up (estimated at the
        // window's rate) and the calls in flight when the window closed (at most connections × streams).
        totalCalls:
          Math.round(Number(m?.[3] ?? ok + failed) * ((o.warmupMs + o.measureMs) / o.measureMs)) + o.connections * o.streams,
      },
      targetCpuMs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
