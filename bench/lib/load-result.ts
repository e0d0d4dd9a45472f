/** What one load run measured; counts of the measured window unless named total. */
export interface LoadResult {
  /** Length of the measured window, in s. */
  seconds: number;
  /** Calls that completed in the window with grpc-status 0 (HTTP 200 for Connect JSON). */
  ok: number;
  /** Calls that completed in the window otherwise. */
  failed: number;
  /** Completed calls of the window by outcome ("0", "14", "http-503", "reset"…). */
  outcomes: Record<string, number>;
  /** First failure seen, for the message. */
  firstFailure: string | undefined;
  /** Latency percentiles of the window's calls, in ms. */
  p50: number;
  p99: number;
  /** CPU the load process used in the window, in ms. */
  loadCpuMs: number;
  /** Every call completed, warm-up and drain included (the transaction count covers all of them). */
  totalCalls: number;
}

/** Load-process messages on stdout, one JSON line each. */
export type LoadMessage = { event: "window-start" } | { event: "window-end" } | { event: "result"; result: LoadResult };
