import type { DatabaseConnection, QueryResult } from "kysely";

/*
 * When a call's deadline cancels its query (inflightQueryAbortStrategy
 * "cancel query"), kysely stops waiting for the query, cancels it from a
 * connection of its own, and reports a later failure of either with a bare
 * console.error line — a line of plain text in the JSON-lines log. Both
 * failures are expected: the query ends with "canceling statement due to
 * user request", and when the query ends while the cancel connection is
 * still opening, kysely's cancel throws a TypeError (its query id is gone)
 * after closing that connection. Here neither reaches kysely as a failure:
 * each is written to the ORM log (debug level) instead. The connection is
 * released as before: kysely waits for both to settle, whatever they settle
 * with.
 */

/** Writes one line to the ORM log. */
export type Note = (message: string) => void;

/** A cancel that never rejects: its failure is noted. */
export function quietCancel(cancel: NonNullable<DatabaseConnection["cancelQuery"]>, note: Note): DatabaseConnection["cancelQuery"] {
  return async (provider) => {
    try {
      await cancel(provider);
    } catch (err) {
      note(`cancelling an abandoned query failed (it had most likely ended first): ${messageOf(err)}`);
    }
  };
}

/**
 * The query's result; once its signal has fired, a failure is noted and
 * turned into an empty result. Nobody reads that result: the signal firing
 * settled kysely's race against the query first (its listener was added
 * before the query started), so only its background handler sees this.
 */
export function quietWhenAbandoned<R>(running: Promise<QueryResult<R>>, signal: AbortSignal | undefined, note: Note): Promise<QueryResult<R>> {
  if (!signal) return running;
  return running.catch((err: unknown) => {
    if (!signal.aborted) throw err;
    note(`a query whose call had ended failed: ${messageOf(err)}`);
    return { rows: [] };
  });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
