/** What taking one token from a bucket gave. */
export interface Take {
  /** Whether a token was taken: the call may go on. */
  admitted: boolean;
  /**
   * How long until the bucket holds a whole token again, in ms; 0 when it
   * still holds one after this take. Also given when admitted: the take
   * that spent the last token says when the next one appears.
   */
  retryAfterMs: number;
}

/**
 * Token buckets shared by every server process of one deployment: Redis when
 * REDIS_URL is set, the database otherwise. Each take is one atomic step in
 * the store (a Lua script, or one UPDATE … RETURNING), timed by the store's
 * clock, so processes neither lose nor double-spend tokens.
 */
export interface BucketStore {
  /** "redis" or "postgresql" (PGlite included), for logs. */
  readonly kind: string;
  /**
   * Refills the tenant's bucket for the time since its last take (at
   * `ratePerSecond`, up to `burst`), then takes one token if there is one.
   */
  take(tenantId: string, ratePerSecond: number, burst: number): Promise<Take>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** How long until `tokens` grows to a whole token at `ratePerSecond`, in ms: 0 when it is one already, else at least 1. */
export function msUntilToken(tokens: number, ratePerSecond: number): number {
  return tokens >= 1 ? 0 : Math.max(1, Math.ceil(((1 - tokens) * 1000) / ratePerSecond));
}
