import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { scopeToTenant } from "../db/tenant.ts";
import { Agent } from "./agent.entity.ts";

// Agents removed per tenant per round, so one run never holds long locks.
const BATCH = 100;

/**
 * Purges soft-deleted agents whose purge_time has passed. This is a system
 * job, not a request: it asks the database which tenants have expired agents
 * (tenant ids read from the rows themselves, never from input, through a
 * SECURITY DEFINER function that returns nothing else: row-level security
 * hides every row from a connection without a tenant), then purges each
 * tenant's through an EntityManager scoped to that tenant, like any handler
 * would. Returns how many agents were purged.
 */
export async function purgeExpiredAgents(orm: MikroORM, now = new Date()): Promise<number> {
  const em = orm.em.fork() as EntityManager;
  const tenants = await em.execute<{ tenant_id: string }[]>("select tenant_id from tenants_with_expired_agents(?)", [now]);
  let purged = 0;
  for (const { tenant_id: tenantId } of tenants) {
    for (;;) {
      const scoped = orm.em.fork() as EntityManager;
      scopeToTenant(scoped, tenantId);
      const expired = { deleteTime: { $ne: null }, purgeTime: { $lte: now } };
      const batch = await scoped.find(Agent, expired, { fields: ["id"], limit: BATCH });
      if (batch.length === 0) break;
      // The condition is repeated in the delete: an agent undeleted since
      // the read is not purged.
      purged += await scoped.nativeDelete(Agent, { id: { $in: batch.map((a) => a.id) }, ...expired });
    }
  }
  return purged;
}
