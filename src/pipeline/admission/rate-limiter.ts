import { RateLimitedError } from "../../common/errors.ts";
import type { Logger } from "../../log.ts";
import type { BucketStore } from "./bucket-store.ts";
import { TenantLines } from "./lines.ts";

/** A tenant's rate limit in force. */
export interface RateLimits {
  /** Requests per second the token bucket refills at; 0: no rate limit. */
  ratePerSecond: number;
  /** Size of the token bucket. */
  rateBurst: number;
}

/** What the rate limiter needs. */
export interface RateLimiterOptions {
  /** The shared buckets. */
  store: BucketStore;
  /** Reads a tenant's limits in force (its overrides, else the defaults); given by the composition root. */
  readLimits: (tenantId: string) => Promise<RateLimits>;
  /** How long a tenant's limits are kept before being read again, in ms. */
  cacheMs: number;
  logger: Logger;
}

// Tenants whose limits are kept at most; the oldest entry goes first.
const MAX_CACHED_TENANTS = 10_000;
// After the store failed, calls are admitted without asking it for this long.
const STORE_BACKOFF_MS = 1_000;
// Takes of one tenant in flight at once from this process; its other calls
// wait in the tenant's own line, not in the database pool's.
const TAKES_PER_TENANT = 2;

/**
 * Admits or refuses each call of a tenant by its token bucket. The buckets
 * live in the shared store; this process adds two things of its own:
 *
 * - a short cache of each tenant's limits (overrides change rarely; an
 *   operator's change reaches the process that made it at once and the
 *   others within `cacheMs`);
 * - the time until which a tenant's bucket is known to be empty: the store's
 *   last take (a refusal, or the admission that spent the last token) said
 *   when the next whole token appears, and until then no call can be
 *   admitted (every process only takes tokens), so calls are refused here
 *   without a store round trip. A flooding tenant costs the store about
 *   one operation per admitted call, not one per call;
 * - a line per tenant: at most TAKES_PER_TENANT takes of a tenant are in
 *   flight at once, the tenant's other calls wait their turn (and are
 *   refused at once when a take in front of them found the bucket empty).
 *   Without it a flooding tenant's calls would pile up in the database
 *   pool's queue, ahead of every other tenant's.
 *
 * When the store fails (Redis down), calls are admitted for a moment and a
 * warning is logged: the limiter protects the service, it must not take it
 * down.
 */
export class RateLimiter {
  readonly #options: RateLimiterOptions;
  readonly #limits = new Map<string, { limits: RateLimits; expires: number }>();
  readonly #loading = new Map<string, Promise<RateLimits>>();
  readonly #emptyUntil = new Map<string, number>();
  readonly #lines = new TenantLines(TAKES_PER_TENANT);
  #storeDownUntil = 0;

  constructor(options: RateLimiterOptions) {
    this.#options = options;
  }

  /**
   * Takes a token for one call of `tenantId`; throws RESOURCE_EXHAUSTED
   * (RATE_LIMITED) with the delay when there is none. `signal` ends a wait in
   * the tenant's line (the call's deadline or cancellation).
   */
  async admit(tenantId: string, signal?: AbortSignal): Promise<void> {
    this.#refuseWhileEmpty(tenantId);
    const limits = await this.limitsOf(tenantId);
    if (limits.ratePerSecond <= 0 || performance.now() < this.#storeDownUntil) return;
    await this.#lines.enter(tenantId, signal);
    let take;
    try {
      // A take ahead in the line may have found the bucket empty meanwhile.
      this.#refuseWhileEmpty(tenantId);
      take = await this.#options.store.take(tenantId, limits.ratePerSecond, limits.rateBurst);
    } catch (error) {
      if (error instanceof RateLimitedError) throw error;
      this.#storeDownUntil = performance.now() + STORE_BACKOFF_MS;
      this.#options.logger.warn("rate-limit store failed; admitting calls unchecked for a moment", {
        store: this.#options.store.kind,
        backoffMs: STORE_BACKOFF_MS,
        error,
      });
      return;
    } finally {
      this.#lines.leave(tenantId);
    }
    if (take.retryAfterMs > 0) this.#emptyUntil.set(tenantId, performance.now() + take.retryAfterMs);
    if (!take.admitted) throw refused(take.retryAfterMs);
  }

  #refuseWhileEmpty(tenantId: string): void {
    const empty = this.#emptyUntil.get(tenantId);
    if (empty === undefined) return;
    const wait = empty - performance.now();
    if (wait > 0) throw refused(Math.ceil(wait));
    this.#emptyUntil.delete(tenantId);
  }

  /** The tenant's limits in force, from the cache or the database. */
  async limitsOf(tenantId: string): Promise<RateLimits> {
    const cached = this.#limits.get(tenantId);
    if (cached && cached.expires > performance.now()) return cached.limits;
    let loading = this.#loading.get(tenantId);
    if (!loading) {
      loading = this.#load(tenantId).finally(() => this.#loading.delete(tenantId));
      this.#loading.set(tenantId, loading);
    }
    return loading;
  }

  /** Drops what this process knows of a tenant (its limits were just changed here). */
  forget(tenantId: string): void {
    this.#limits.delete(tenantId);
    this.#emptyUntil.delete(tenantId);
  }

  /** Closes the store. */
  close(): Promise<void> {
    return this.#options.store.close();
  }

  async #load(tenantId: string): Promise<RateLimits> {
    const limits = await this.#options.readLimits(tenantId);
    this.#limits.delete(tenantId);
    if (this.#limits.size >= MAX_CACHED_TENANTS) {
      this.#limits.delete(this.#limits.keys().next().value!);
    }
    this.#limits.set(tenantId, { limits, expires: performance.now() + this.#options.cacheMs });
    if (this.#emptyUntil.size > MAX_CACHED_TENANTS) this.#emptyUntil.clear();
    return limits;
  }
}

/** The error of a call refused by the rate limit, `retryAfterMs` before a token is there. */
export function refused(retryAfterMs: number): RateLimitedError {
  return new RateLimitedError(retryAfterMs, { retry_after_ms: String(retryAfterMs) });
}
