import type { MikroORM } from "@mikro-orm/core";
import { openOrm, type DatabaseConfig } from "./db/orm.ts";
import { entities } from "./entities.ts";

export { migrateDown, migrateUp, type DatabaseConfig } from "./db/orm.ts";

/**
 * Connects to PostgreSQL or opens the embedded database with every entity of
 * the service, as the role the service runs as (see DatabaseConfig.appUrl).
 */
export function openDatabase(config: DatabaseConfig): Promise<MikroORM> {
  return openOrm(config, entities);
}
