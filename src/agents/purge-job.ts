import type { MikroORM } from "@mikro-orm/core";
import { forEachTenantWithWork } from "../db/system-jobs.ts";
import { Agent } from "./agent.entity.ts";

// Agents removed per tenant per round, so one run never holds long locks.
const BATCH = 100;

/**
 * Purges soft-deleted agents whose purge_time has passed, tenant by tenant
 * (see forEachTenantWithWork). Returns how many agents were purged.
 */
export async function purgeExpiredAgents(orm: MikroORM, now = new Date()): Promise<number> {
  return forEachTenantWithWork(orm, "select tenant_id from tenants_with_expired_agents(?)", [now], async (em) => {
    const expired = { deleteTime: { $ne: null }, purgeTime: { $lte: now } };
    let purged = 0;
    for (;;) {
      const batch = await em.find(Agent, expired, { fields: ["id"], limit: BATCH });
      if (batch.length === 0) return purged;
      // The condition is repeated in the delete: an agent undeleted since
      // the read is not purged.
      purged += await em.nativeDelete(Agent, { id: { $in: batch.map((a) => a.id) }, ...expired });
      em.clear();
    }
  });
}
