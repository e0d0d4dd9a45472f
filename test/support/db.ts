import pg from "pg";
import type { MikroORM } from "@mikro-orm/core";
import { migrateUp, openDatabase, type DatabaseConfig } from "../../src/db/orm.ts";

/** A migrated database of the test file's own. */
export interface TestDatabase {
  /** The open ORM. */
  orm: MikroORM;
  /** How to open it again (for a server in another process). */
  config: DatabaseConfig;
  /** Closes it and drops the PostgreSQL database. */
  close(): Promise<void>;
}

/** Whether the suite runs on PostgreSQL (TEST_DATABASE_URL) rather than PGlite. */
export const onPostgres = Boolean(process.env.TEST_DATABASE_URL);

/**
 * With TEST_DATABASE_URL, a fresh PostgreSQL database named after the worker
 * (files in one worker run one after another, so the name is free);
 * otherwise an in-memory PGlite. Either way every migration is applied.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    const config: DatabaseConfig = { dataDir: "memory://", poolMax: 1 };
    const orm = await openDatabase(config);
    await migrateUp(orm);
    return { orm, config, close: () => orm.close() };
  }
  // Worker slot and process id: unique even when two suites share one server.
  const name = `agent_platform_test_${process.env.VITEST_POOL_ID ?? "0"}_${process.pid}`;
  await admin(adminUrl, [`drop database if exists ${name} with (force)`, `create database ${name}`]);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const config: DatabaseConfig = { url: url.toString(), poolMax: 10, dataDir: "" };
  const orm = await openDatabase(config);
  await migrateUp(orm);
  return {
    orm,
    config,
    async close() {
      await orm.close();
      await admin(adminUrl, [`drop database if exists ${name} with (force)`]);
    },
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
