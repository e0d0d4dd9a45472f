import type { Logger } from "../log.ts";

/** A background job that can be stopped. */
export interface Job {
  stop(): void;
}

/**
 * Runs `work` every `intervalMs` (never two rounds at once), logging what it
 * did and any failure; the timer does not keep the process alive.
 */
export function every(
  intervalMs: number,
  name: string,
  work: () => Promise<number>,
  logger: Logger,
): Job {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    work()
      .then(
        (count) => count > 0 && logger.info(`${name}: done`, { count }),
        (error: unknown) => logger.error(`${name}: failed`, { error }),
      )
      .finally(() => (running = false));
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
