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
 * (its share); beyond it, it may borrow the turns no other tenant uses, up
 * to `capacity` turns in all, as long as no other tenant is waiting: a
 * tenant alone uses the whole capacity, and shares bite only when tenants
 * compete. A tenant's calls beyond that wait first come, first served in its
 * own line, not in a queue other tenants share (the database pool's, the
 * bucket store's). Freed turns go first to tenants below their share, then,
 * round robin, to the tenants waiting to borrow.
 */
export class TenantLines {
  readonly #width: number;
  readonly #capacity: number;
  readonly #lines = new Map<string, Line>();
  // Tenants with callers waiting, in the order they get borrowed turns.
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
    if (this.#running >= this.#capacity) return false;
    // Borrowing: only while no other tenant waits for a turn.
    return this.#waiting.size === 0 || (this.#waiting.size === 1 && this.#waiting.has(tenantId));
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
          // A borrower that stopped waiting may let another borrow.
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
    // …then borrowed turns, one tenant after another.
    while (this.#waiting.size > 0 && this.#running < this.#capacity) {
      const tenantId = this.#waiting.values().next().value!;
      const line = this.#lines.get(tenantId)!;
      this.#waiting.delete(tenantId);
      this.#admitNext(tenantId, line);
      if (line.waiting.length > 0) this.#waiting.add(tenantId);
    }
  }

  #admitNext(tenantId: string, line: Line): void {
    const next = line.waiting.shift()!;
    line.running++;
    this.#running++;
    if (line.waiting.length === 0) this.#waiting.delete(tenantId);
    next.enter();
  }
}
