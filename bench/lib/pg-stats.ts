import pg from "pg";

/** Counters of one database at one moment. */
export interface PgSnapshot {
  /** xact_commit + xact_rollback of pg_stat_database. */
  transactions: number;
  /** Sum of pg_stat_statements calls in the database; undefined when the extension is not loaded. */
  statements: number | undefined;
}

/**
 * Reads the counters of database `name` through a connection to another
 * database of the same server (`adminUrl`), so reading them adds nothing to
 * what is counted.
 */
export async function openPgStats(adminUrl: string, name: string) {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  const preload = String((await client.query("show shared_preload_libraries")).rows[0]?.shared_preload_libraries ?? "");
  let statementsWhyNot: string | undefined;
  if (!/\bpg_stat_statements\b/.test(preload)) {
    statementsWhyNot = "pg_stat_statements is not in shared_preload_libraries of this server (BENCH_PG=own starts one that has it)";
  } else {
    await client.query("create extension if not exists pg_stat_statements");
  }
  return {
    /** Why statements are not counted; undefined when they are. */
    statementsWhyNot,
    /**
     * The counters. Backends report transactions to the statistics system up
     * to 10 s late (see PG_SETTLE_MS in drive.ts); statements are counted at once.
     */
    async snapshot(): Promise<PgSnapshot> {
      const { rows } = await client.query(
        "select xact_commit + xact_rollback as n from pg_stat_database where datname = $1",
        [name],
      );
      let statements: number | undefined;
      if (!statementsWhyNot) {
        const r = await client.query(
          "select coalesce(sum(calls), 0) as n from pg_stat_statements where dbid = (select oid from pg_database where datname = $1)",
          [name],
        );
        statements = Number(r.rows[0].n);
      }
      return { transactions: Number(rows[0]?.n ?? NaN), statements };
    },
    close: () => client.end(),
  };
}

/** Drops and creates database `name` on the server of `adminUrl`; returns its URL. */
export async function recreateDatabase(adminUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`drop database if exists ${name} with (force)`);
    await client.query(`create database ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
