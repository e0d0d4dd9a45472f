import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { MikroORM, type Options } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { PgliteDriver } from "@mikro-orm/pglite";
import { PostgreSqlDriver } from "@mikro-orm/postgresql";
import { entities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { TenantGuard, tenantFilter } from "./tenant.ts";

/** Where the data lives. */
export interface DatabaseConfig {
  /** A PostgreSQL URL; when absent, embedded PGlite under `dataDir`. */
  url?: string;
  /** Folder of the embedded PGlite database; "memory://" keeps it in memory. */
  dataDir: string;
  /** Most connections in the PostgreSQL pool. */
  poolMax: number;
  /** Log every query (development only). */
  debug?: boolean;
  /** Where ORM messages (migrations applied, queries in debug) go; silent when absent. */
  log?: (message: string) => void;
}

function options(config: DatabaseConfig): Partial<Options> {
  const common: Partial<Options> = {
    entities,
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
    return { ...common, driver: PostgreSqlDriver, clientUrl: config.url, pool: { min: 0, max: config.poolMax } };
  }
  if (!config.dataDir.startsWith("memory://")) {
    mkdirSync(config.dataDir, { recursive: true });
  }
  const dbName = config.dataDir.startsWith("memory://") ? "memory://" : join(config.dataDir, "pglite");
  return { ...common, driver: PgliteDriver, dbName };
}

/** Connects to PostgreSQL or opens the embedded database. */
export async function openDatabase(config: DatabaseConfig): Promise<MikroORM> {
  return MikroORM.init(options(config));
}

/** Applies pending migrations; returns the names applied. */
export async function migrateUp(orm: MikroORM): Promise<string[]> {
  const applied = await orm.migrator.up();
  return applied.map((m) => m.name);
}

/** Reverts the most recent migration, or down to (excluding) `to`. */
export async function migrateDown(orm: MikroORM, to?: string): Promise<string[]> {
  const reverted = await orm.migrator.down(to ? { to } : undefined);
  return reverted.map((m) => m.name);
}
