// Latencies in log-spaced buckets 1 % wide: bounded memory whatever the call count.
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = 2_400; // 1 µs · 1.01^2400 ≈ 23 000 s

/** A latency histogram with ~1 % resolution from 1 µs up. */
export function createHistogram() {
  const counts = new Uint32Array(BUCKETS);
  let total = 0;
  return {
    /** Adds one latency, in ms. */
    record(ms: number): void {
      const us = Math.max(1, ms * 1000);
      counts[Math.min(BUCKETS - 1, Math.floor(Math.log(us) / LOG_GROWTH))]!++;
      total++;
    },
    /** The latency below which `p` % of the recorded ones fall, in ms (upper edge of its bucket); NaN when empty. */
    percentile(p: number): number {
      if (total === 0) return NaN;
      const rank = Math.ceil((p / 100) * total);
      let seen = 0;
      for (let i = 0; i < BUCKETS; i++) {
        seen += counts[i]!;
        if (seen >= rank) return GROWTH ** (i + 1) / 1000;
      }
      return NaN;
    },
    /** How many were recorded. */
    count: () => total,
  };
}
