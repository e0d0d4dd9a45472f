import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { abortStrategyOf } from "../db/orm.ts";
import type { Logger } from "../log.ts";

/** A periodic `select 1` that tells health whether the database answers. */
export interface DatabaseProbe {
  /** Starts probing (idempotent). */
  start(): void;
  /** Stops probing; resolves once a probe in flight has settled. */
  stop(): Promise<void>;
}

/** How to probe. */
export interface DatabaseProbeOptions {
  orm: MikroORM;
  /** Time between the end of one probe and the start of the next, in ms. */
  intervalMs: number;
  /** A probe that has not answered within this is a failure, in ms. */
  timeoutMs: number;
  /** Consecutive failures before the database counts as unreachable (one success restores it). */
  failuresBeforeDown?: number;
  /** Told each time reachability changes. */
  onChange(reachable: boolean): void;
  logger: Logger;
}

/**
 * Runs `select 1` through the ORM's pool every `intervalMs`, bounded by
 * `timeoutMs` (the query is cancelled past it). One query every few seconds
 * on a pooled connection: cheap. A database that stops answering turns
 * health NOT_SERVING; it turns SERVING again at the first answer, without a
 * restart (the pool replaces broken connections by itself).
 */
export function createDatabaseProbe(options: DatabaseProbeOptions): DatabaseProbe {
  const { orm, intervalMs, timeoutMs, onChange, logger } = options;
  const failuresBeforeDown = options.failuresBeforeDown ?? 2;
  const abortStrategy = abortStrategyOf(orm);
  let reachable = true;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;

  const probe = async (): Promise<void> => {
    const signal = AbortSignal.timeout(timeoutMs);
    let error: unknown;
    try {
      const em = orm.em.fork({ signal, inflightQueryAbortStrategy: abortStrategy }) as EntityManager;
      // The race bounds the wait for a pooled connection too, which the signal does not.
      await Promise.race([
        em.execute("select 1"),
        new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true })),
      ]);
    } catch (err) {
      error = err;
    }
    failures = error === undefined ? 0 : failures + 1;
    const now = failures === 0 ? true : failures >= failuresBeforeDown ? false : reachable;
    if (now !== reachable) {
      reachable = now;
      if (reachable) logger.info("database reachable again");
      else logger.error("database unreachable", { error, failures });
      onChange(reachable);
    }
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = probe().finally(() => {
        running = undefined;
        schedule();
      });
    }, intervalMs);
    timer.unref();
  };

  return {
    start() {
      if (!stopped || intervalMs <= 0) return;
      stopped = false;
      schedule();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
