import { createHistogram } from "./histogram.ts";
import type { LoadResult } from "./load-result.ts";

/** Sends call number `i` on slot `slot`; calls `done` once with its outcome ("0" is success) and, on failure, a detail. */
export type Fire = (i: number, slot: number, done: (outcome: string, detail?: string) => void) => void;

/** Phases of a run and what happens at their edges. */
export interface LoopOptions {
  /** Calls kept in flight. */
  concurrency: number;
  /** Warm-up before the measured window, in ms (not counted, but its calls are in totalCalls). */
  warmupMs: number;
  /** Measured window, in ms. */
  measureMs: number;
  /** Called when the measured window opens and closes. */
  onWindow(edge: "start" | "end"): void;
}

/**
 * Keeps `concurrency` calls in flight: warm-up, then the measured window
 * (only calls completing inside it count), then waits for the calls in flight.
 */
export function runLoop(fire: Fire, o: LoopOptions): Promise<LoadResult> {
  const histogram = createHistogram();
  const outcomes: Record<string, number> = {};
  let phase: "warmup" | "measure" | "drain" = "warmup";
  let seq = 0;
  let ok = 0;
  let failed = 0;
  let totalCalls = 0;
  let inFlight = 0;
  let firstFailure: string | undefined;
  let cpuStart = process.cpuUsage();
  let windowStart = 0;
  let windowSeconds = 0;
  let loadCpuMs = 0;
  return new Promise((resolve) => {
    const finish = () =>
      resolve({
        seconds: windowSeconds,
        ok,
        failed,
        outcomes,
        firstFailure,
        p50: histogram.percentile(50),
        p99: histogram.percentile(99),
        loadCpuMs,
        totalCalls,
      });
    const start = (slot: number) => {
      if (phase === "drain") {
        if (inFlight === 0) finish();
        return;
      }
      const i = seq++;
      inFlight++;
      const t0 = performance.now();
      let settled = false;
      fire(i, slot, (outcome, detail) => {
        if (settled) return;
        settled = true;
        inFlight--;
        totalCalls++;
        if (phase === "measure") {
          histogram.record(performance.now() - t0);
          outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
          if (outcome === "0") ok++;
          else {
            failed++;
            firstFailure ??= `${outcome}${detail ? `: ${detail}` : ""}`;
          }
        } else if (outcome !== "0") {
          firstFailure ??= `${outcome}${detail ? `: ${detail}` : ""} (warm-up)`;
        }
        // Next call on a fresh tick, so a synchronous failure cannot recurse.
        setImmediate(start, slot);
      });
    };
    setTimeout(() => {
      phase = "measure";
      cpuStart = process.cpuUsage();
      windowStart = performance.now();
      o.onWindow("start");
      setTimeout(() => {
        const cpu = process.cpuUsage(cpuStart);
        loadCpuMs = (cpu.user + cpu.system) / 1000;
        windowSeconds = (performance.now() - windowStart) / 1000;
        phase = "drain";
        o.onWindow("end");
        if (inFlight === 0) finish();
      }, o.measureMs);
    }, o.warmupMs);
    for (let slot = 0; slot < o.concurrency; slot++) start(slot);
  });
}
