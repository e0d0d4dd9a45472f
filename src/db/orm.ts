import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { MikroORM, type EntityClass, type InflightQueryAbortStrategy, type Options } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { PgliteDriver } from "@mikro-orm/pglite";
import { PostgreSqlDriver } from "@mikro-orm/postgresql";
import { migrations } from "./migrations/index.ts";
import { ReleasingPostgreSqlDriver } from "./releasing-driver.ts";
import { APP_ROLE, CREATE_APP_ROLE } from "./rls.ts";
import { scopeByFilterOnly, TenantGuard, tenantFilter } from "./tenant.ts";

/** Where the data lives. */
export interface DatabaseConfig {
  /**
   * A PostgreSQL URL of the owner role, which migrations run as; when absent,
   * embedded PGlite under `dataDir`.
   */
  url?: string;
  /**
   * The PostgreSQL URL the service itself connects with (APP_DATABASE_URL):
   * a role subject to row-level security. Default: `url` with the user
   * replaced by agent_platform_app and no password.
   */
  appUrl?: string;
  /**
   * Benchmarks only: false connects as the owner (`url`, or PGlite's
   * superuser) and sets no tenant in the database session, leaving the ORM
   * filter as the only tenant boundary. Default true.
   */
  rowLevelSecurity?: boolean;
  /** Folder of the embedded PGlite database; "memory://" keeps it in memory. */
  dataDir: string;
  /** Most connections in the PostgreSQL pool. */
  poolMax: number;
  /**
   * How long a query waits for a pooled connection, or for a new connection
   * to open, before it fails (UNAVAILABLE), in ms. Default 5000.
   */
  acquireTimeoutMs?: number;
  /** Log every query (development only). */
  debug?: boolean;
  /** Where ORM messages (migrations applied, queries in debug) go; silent when absent. */
  log?: (message: string) => void;
}

const DEFAULT_ACQUIRE_TIMEOUT_MS = 5000;

/**
 * What a fork's `signal` does to its query in flight when it fires (a
 * deadline, a cancel): on PostgreSQL the query is cancelled
 * (pg_cancel_backend, from a connection of its own, so it works when the
 * pool is full) and its connection goes back to the pool clean; the
 * embedded PGlite cannot cancel, so its query runs to its end.
 */
export function abortStrategyOf(orm: MikroORM): InflightQueryAbortStrategy {
  return orm.config.getDriver() instanceof PostgreSqlDriver ? "cancel query" : "ignore query";
}

/** How many connections the service's queries share: the pool's size, or PGlite's one. */
export function connectionsOf(orm: MikroORM): number {
  return orm.config.getDriver() instanceof PostgreSqlDriver ? (orm.config.get("pool")?.max ?? 1) : 1;
}

// How each open ORM was configured, for migrations (which run as the owner).
const configs = new WeakMap<MikroORM, { config: DatabaseConfig; entities: EntityList }>();

/** The URL the service connects with on PostgreSQL: APP_DATABASE_URL, else DATABASE_URL as agent_platform_app. */
export function appDatabaseUrl(config: DatabaseConfig): string | undefined {
  if (config.appUrl || !config.url) return config.appUrl || config.url;
  const url = new URL(config.url);
  url.username = APP_ROLE;
  url.password = "";
  return url.toString();
}

// A kysely connection, as MikroORM's onCreateConnection hands it over.
type RawConnection = { executeQuery(query: { sql: string; parameters: readonly unknown[] }): Promise<unknown> };

/**
 * PGlite is single-user (a superuser, to whom RLS does not apply): its one
 * connection switches to APP_ROLE as soon as it opens, for the session.
 * Migrations switch back for their duration (asOwner).
 */
async function enterAppRole(connection: unknown): Promise<void> {
  const raw = connection as RawConnection;
  await raw.executeQuery({ sql: CREATE_APP_ROLE, parameters: [] });
  await raw.executeQuery({ sql: `set role ${APP_ROLE}`, parameters: [] });
}

/** The entities an ORM knows: the composition root names them (src/entities.ts), so db/ imports no feature. */
export type EntityList = readonly EntityClass<unknown>[];

function options(config: DatabaseConfig, entities: EntityList, as: "app" | "owner" = "app"): Partial<Options> {
  const rls = as === "app" && config.rowLevelSecurity !== false;
  const common: Partial<Options> = {
    entities: [...entities],
    filters: { tenant: tenantFilter },
    subscribers: [new TenantGuard()],
    extensions: [Migrator],
    migrations: { migrationsList: migrations, transactional: true, allOrNothing: true, snapshot: false },
    // Handlers must use their request's fork; the global EntityManager refuses work.
    allowGlobalContext: false,
    debug: config.debug ?? false,
    logger: config.log ?? (() => {}),
    colors: false,
  };
  if (config.url) {
    const clientUrl = rls ? appDatabaseUrl(config) : config.url;
    return {
      ...common,
      // PostgreSqlDriver, releasing the connections of transactions that died with them.
      driver: ReleasingPostgreSqlDriver,
      clientUrl,
      pool: { min: 0, max: as === "owner" ? 1 : config.poolMax },
      // A full pool or an unreachable server fails the query after this wait
      // instead of queueing it forever; keep-alive finds dead connections.
      driverOptions: { connectionTimeoutMillis: config.acquireTimeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS, keepAlive: true },
    };
  }
  if (!config.dataDir.startsWith("memory://")) {
    mkdirSync(config.dataDir, { recursive: true });
  }
  const dbName = config.dataDir.startsWith("memory://") ? "memory://" : join(config.dataDir, "pglite");
  return { ...common, driver: PgliteDriver, dbName, ...(rls ? { onCreateConnection: enterAppRole } : {}) };
}

/**
 * Connects to PostgreSQL or opens the embedded database, as the role the
 * service runs as (see `appUrl`). Connections open lazily, so the role may be
 * created by the migrations that follow.
 */
export async function openOrm(config: DatabaseConfig, entities: EntityList): Promise<MikroORM> {
  const orm = await MikroORM.init(options(config, entities));
  configs.set(orm, { config, entities });
  if (config.rowLevelSecurity === false) scopeByFilterOnly(orm);
  return orm;
}

/**
 * Runs `work` with an ORM connected as the owner: on PostgreSQL a short-lived
 * one on `url`; on PGlite the same connection, switched back to the superuser
 * meanwhile (PGlite has one connection; at start-up nothing else runs).
 */
async function asOwner<T>(orm: MikroORM, work: (owner: MikroORM) => Promise<T>): Promise<T> {
  const opened = configs.get(orm);
  if (!opened || opened.config.rowLevelSecurity === false) return work(orm);
  if (opened.config.url) {
    const owner = await MikroORM.init(options(opened.config, opened.entities, "owner"));
    try {
      return await work(owner);
    } finally {
      await owner.close();
    }
  }
  const connection = orm.em.fork().getConnection();
  await connection.execute("reset role");
  try {
    return await work(orm);
  } finally {
    await connection.execute(`set role ${APP_ROLE}`);
  }
}

/** Applies pending migrations, as the owner; returns the names applied. */
export async function migrateUp(orm: MikroORM): Promise<string[]> {
  const applied = await asOwner(orm, (owner) => owner.migrator.up());
  return applied.map((m) => m.name);
}

/** Reverts the most recent migration, or down to (excluding) `to`, as the owner. */
export async function migrateDown(orm: MikroORM, to?: string): Promise<string[]> {
  const reverted = await asOwner(orm, (owner) => owner.migrator.down(to ? { to } : undefined));
  return reverted.map((m) => m.name);
}
