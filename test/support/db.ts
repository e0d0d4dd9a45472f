import pg from "pg";
import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { migrateUp, openDatabase, type DatabaseConfig } from "../../src/database.ts";

/** A migrated database of the test file's own. */
export interface TestDatabase {
  /** The open ORM. */
  orm: MikroORM;
  /** How to open it again (for a server in another process). */
  config: DatabaseConfig;
  /** Closes it and drops the PostgreSQL database. */
  close(): Promise<void>;
  /**
   * Runs SQL as the owner, a superuser in tests: row-level security does not
   * apply, so it sees and changes every tenant's rows, and may change the
   * schema. For arranging and inspecting only; `orm` is what the service uses.
   */
  sql<T = Record<string, unknown>>(query: string, params?: unknown[]): Promise<T[]>;
}

/** How to create a test database. */
export interface TestDatabaseOptions {
  /** false: the ORM connects as the owner and sets no tenant in the session (the ORM filter alone). */
  rowLevelSecurity?: boolean;
  /** Appended to the PostgreSQL database name, for a second database in one file. */
  suffix?: string;
  /** Most connections in the PostgreSQL pool (default 10). */
  poolMax?: number;
}

const owners = new WeakMap<MikroORM, TestDatabase["sql"]>();

/** `sql` of the test database whose ORM is `orm` (see TestDatabase.sql). */
export function ownerSql<T = Record<string, unknown>>(orm: MikroORM, query: string, params: unknown[] = []): Promise<T[]> {
  const sql = owners.get(orm);
  if (!sql) throw new Error("not the ORM of a test database");
  return sql(query, params) as Promise<T[]>;
}

/** Whether the suite runs on PostgreSQL (TEST_DATABASE_URL) rather than PGlite. */
export const onPostgres = Boolean(process.env.TEST_DATABASE_URL);

/**
 * With TEST_DATABASE_URL, a fresh PostgreSQL database named after the worker
 * (files in one worker run one after another, so the name is free);
 * otherwise an in-memory PGlite. Either way every migration is applied.
 */
export async function createTestDatabase(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  const rowLevelSecurity = options.rowLevelSecurity ?? true;
  if (!adminUrl) {
    const config: DatabaseConfig = { dataDir: "memory://", poolMax: 1, rowLevelSecurity };
    const orm = await openDatabase(config);
    await migrateUp(orm);
    const sql = rowLevelSecurity ? pgliteOwnerSql(orm) : plainSql(orm);
    owners.set(orm, sql);
    return { orm, config, sql, close: () => orm.close() };
  }
  // Worker slot and process id: unique even when two suites share one server.
  const name = `agent_platform_test_${process.env.VITEST_POOL_ID ?? "0"}_${process.pid}${options.suffix ?? ""}`;
  await admin(adminUrl, [`drop database if exists ${name} with (force)`, `create database ${name}`]);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const config: DatabaseConfig = { url: url.toString(), poolMax: options.poolMax ?? 10, dataDir: "", rowLevelSecurity };
  const orm = await openDatabase(config);
  await migrateUp(orm);
  const owner = rowLevelSecurity ? await openDatabase({ ...config, poolMax: 2, rowLevelSecurity: false }) : orm;
  const sql = plainSql(owner);
  owners.set(orm, sql);
  return {
    orm,
    config,
    sql,
    async close() {
      if (owner !== orm) await owner.close();
      await orm.close();
      await admin(adminUrl, [`drop database if exists ${name} with (force)`]);
    },
  };
}

function plainSql(orm: MikroORM): TestDatabase["sql"] {
  return (query, params = []) => (orm.em.fork() as EntityManager).getConnection().execute(query, params);
}

// PGlite has one connection, running as agent_platform_app: one transaction
// steps back to the superuser (SET LOCAL ends with it).
function pgliteOwnerSql(orm: MikroORM): TestDatabase["sql"] {
  return (query, params = []) => {
    const connection = (orm.em.fork() as EntityManager).getConnection();
    return connection.transactional(async (trx) => {
      await connection.execute("set local role none", [], "run", trx);
      return connection.execute(query, params, "all", trx);
    });
  };
}

async function admin(url: string, statements: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}
