import type { MikroORM } from "@mikro-orm/core";

/** What the database was sent while a recording ran. */
export interface Recorded {
  /** Every statement, in order, as MikroORM logs it (BEGIN, SAVEPOINT and COMMIT included). */
  statements: string[];
  /** Top-level transactions begun (savepoints are not transactions). */
  transactions: number;
}

/**
 * Records the statements an ORM sends, through the query log MikroORM keeps
 * for every statement it runs, transaction control included: no statement of
 * a request's EntityManager passes it by. `ignore` drops statements that
 * belong to something other than the handler (the rate limiter's bucket take).
 */
export function statementRecorder(orm: MikroORM, ignore: RegExp[] = []) {
  const logger = orm.config.getLogger();
  const logQuery = logger.logQuery.bind(logger);
  let recording: string[] | undefined;
  logger.logQuery = (context) => {
    const query = context.query ?? "";
    if (recording && !ignore.some((re) => re.test(query))) recording.push(query);
    logQuery(context);
  };
  return {
    /** Runs `work` and returns what it sent. */
    async record(work: () => Promise<unknown>): Promise<Recorded> {
      const statements: string[] = [];
      recording = statements;
      try {
        await work();
      } finally {
        recording = undefined;
      }
      return { statements, transactions: statements.filter((s) => /^(begin|start transaction)\b/i.test(s.trim())).length };
    },
    /** Puts the logger back. */
    restore() {
      logger.logQuery = logQuery;
    },
  };
}
