/** Things to undo on exit, newest first: child processes, a throwaway cluster, temp directories. */
const steps: { name: string; run: () => unknown }[] = [];
let running: Promise<void> | undefined;

/** Registers a cleanup step; returns a function that runs it early (once) and unregisters it. */
export function onCleanup(name: string, run: () => unknown): () => Promise<void> {
  const step = { name, run };
  steps.push(step);
  return async () => {
    const i = steps.indexOf(step);
    if (i < 0) return;
    steps.splice(i, 1);
    await run();
  };
}

/** Runs every registered step, newest first; a failing step is reported and the rest still run. */
export function cleanUp(): Promise<void> {
  running ??= (async () => {
    while (steps.length > 0) {
      const step = steps.pop()!;
      try {
        await step.run();
      } catch (err) {
        console.error(`cleanup: ${step.name}: ${String(err)}`);
      }
    }
  })();
  return running;
}

/** On Ctrl-C or SIGTERM: clean up, then exit 130. */
export function cleanUpOnSignals(): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping the bench's processes`);
      void cleanUp().finally(() => process.exit(130));
    });
  }
}
