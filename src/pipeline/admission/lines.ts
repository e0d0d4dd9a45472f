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
 * One line per tenant. A tenant always gets up to `width` turns at once
 * (its share); a tenant alone (no other tenant has a turn or waits for one)
 * may borrow beyond it, up to `capacity` turns: shares bite only when
 * tenants compete. Borrowing stops as soon as another tenant calls, and the
 * borrowed turns come back as they end. A tenant's calls beyond that wait
 * first come, first served in its own line, not in a queue other tenants
 * share (the database pool's, the bucket store's).
 */
export class TenantLines {
  readonly #width: number;
  readonly #capacity: number;
  readonly #lines = new Map<string, Line>();
  // Tenants with callers waiting.
  readonly #waiting = new Set<string>();
  #running = 0;

  /** `capacity` 0 (the default): no borrowing, each tenant gets its `width`. */
  constructor(width: number, capacity = 0) {
    this.#width = Math.max(1, width);
    this.#capacity = capacity;
  }

  #mayEnter(tenantId: string, line: Line | undefined): boolean {
    const running = line?.running ?? 0;
    if (running < this.#width) return true;
    return this.#running < this.#capacity && this.#alone(tenantId);
  }

  /** Whether no tenant but this one has a turn or waits for one. */
  #alone(tenantId: string): boolean {
    return this.#lines.size === 0 || (this.#lines.size === 1 && this.#lines.has(tenantId));
  }

  #take(tenantId: string, line: Line | undefined): void {
    this.#running++;
    if (line) line.running++;
    else this.#lines.set(tenantId, { running: 1, waiting: [] });
  }

  /** Takes a turn if one is free now, without waiting; true when it did. */
  tryEnter(tenantId: string): boolean {
    const line = this.#lines.get(tenantId);
    if ((line && line.waiting.length > 0) || !this.#mayEnter(tenantId, line)) return false;
    this.#take(tenantId, line);
    return true;
  }

  /** Waits for a turn in the tenant's line; `signal` gives the place up (rejecting with its reason). */
  enter(tenantId: string, signal?: AbortSignal): Promise<void> {
    if (this.tryEnter(tenantId)) return Promise.resolve();
    // Rejects, never throws: callers chain on the promise.
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    let found = this.#lines.get(tenantId);
    if (!found) {
      found = { running: 0, waiting: [] };
      this.#lines.set(tenantId, found);
    }
    const line = found;
    const waiting = line.waiting;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => waiter.abandon(signal!.reason);
      const waiter: Waiter = {
        enter() {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        abandon: (reason) => {
          const at = waiting.indexOf(waiter);
          if (at >= 0) waiting.splice(at, 1);
          if (waiting.length === 0) {
            this.#waiting.delete(tenantId);
            if (line.running === 0) this.#lines.delete(tenantId);
          }
          reject(reason);
          // The tenant that stopped waiting may leave another alone, free to borrow.
          this.#handOut();
        },
      };
      waiting.push(waiter);
      this.#waiting.add(tenantId);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Ends a turn: the freed turn goes to whoever may take it next. */
  leave(tenantId: string): void {
    const line = this.#lines.get(tenantId);
    if (!line || line.running === 0) return;
    line.running--;
    this.#running--;
    if (line.running === 0 && line.waiting.length === 0) this.#lines.delete(tenantId);
    this.#handOut();
  }

  #handOut(): void {
    // First the tenants below their share…
    for (const tenantId of this.#waiting) {
      const line = this.#lines.get(tenantId)!;
      while (line.waiting.length > 0 && line.running < this.#width) this.#admitNext(tenantId, line);
    }
    // …then borrowed turns, to a tenant alone.
    if (this.#waiting.size !== 1 || this.#lines.size !== 1) return;
    const tenantId = this.#waiting.values().next().value!;
    const line = this.#lines.get(tenantId)!;
    while (line.waiting.length > 0 && this.#running < this.#capacity) this.#admitNext(tenantId, line);
  }

  #admitNext(tenantId: string, line: Line): void {
    const next = line.waiting.shift()!;
    line.running++;
    this.#running++;
    if (line.waiting.length === 0) this.#waiting.delete(tenantId);
    next.enter();
  }
}
