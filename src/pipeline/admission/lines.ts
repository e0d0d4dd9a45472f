/** A caller waiting in a tenant's line. */
interface Waiter {
  enter(): void;
  abandon(reason: unknown): void;
}

/** The turns of one tenant in progress, and the callers waiting for one. */
interface Line {
  running: number;
  waiting: Waiter[];
}

/**
 * One line per tenant: at most `width` callers of a tenant hold a turn at
 * once, the tenant's others wait first come, first served in its own line.
 * A tenant with many callers then queues behind itself, not in a queue that
 * other tenants share (the database pool's, the bucket store's).
 */
export class TenantLines {
  readonly #width: number;
  readonly #lines = new Map<string, Line>();

  constructor(width: number) {
    this.#width = Math.max(1, width);
  }

  /** Takes a turn if one is free now, without waiting; true when it did. */
  tryEnter(tenantId: string): boolean {
    const line = this.#lines.get(tenantId);
    if (line && line.running >= this.#width) return false;
    if (line) line.running++;
    else this.#lines.set(tenantId, { running: 1, waiting: [] });
    return true;
  }

  /** Waits for a turn in the tenant's line; `signal` gives the place up (rejecting with its reason). */
  enter(tenantId: string, signal?: AbortSignal): Promise<void> {
    let line = this.#lines.get(tenantId);
    if (!line) {
      line = { running: 0, waiting: [] };
      this.#lines.set(tenantId, line);
    }
    if (line.running < this.#width) {
      line.running++;
      return Promise.resolve();
    }
    // Rejects, never throws: callers chain on the promise.
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const waiting = line.waiting;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => waiter.abandon(signal!.reason);
      const waiter: Waiter = {
        enter() {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        abandon(reason) {
          const at = waiting.indexOf(waiter);
          if (at >= 0) waiting.splice(at, 1);
          reject(reason);
        },
      };
      waiting.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Ends a turn: the next caller in the tenant's line takes it over. */
  leave(tenantId: string): void {
    const line = this.#lines.get(tenantId);
    if (!line) return;
    const next = line.waiting.shift();
    if (next) {
      next.enter();
      return;
    }
    line.running--;
    if (line.running === 0) this.#lines.delete(tenantId);
  }
}
