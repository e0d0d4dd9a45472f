import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { scopeToTenant } from "../db/tenant.ts";
import { UNFINISHED } from "./codecs.ts";
import { Execution } from "./execution.entity.ts";

/**
 * Closes executions that no server is running any more, as FAILED with a
 * clear reason: those this instance left behind when it died (same instance
 * id, found at start-up) and those of any instance whose heartbeat stopped
 * more than `staleMs` ago. A system job: tenants come from the rows (through
 * a SECURITY DEFINER function that returns tenant ids and nothing else), and
 * each tenant's rows are updated through an EntityManager scoped to it.
 */
export async function failOrphans(
  orm: MikroORM,
  options: { instanceId?: string; staleMs: number },
  now = new Date(),
): Promise<number> {
  const staleBefore = new Date(now.getTime() - options.staleMs);
  // An instance id that can match no row when only stale heartbeats count.
  const instanceId = options.instanceId ?? "";
  const tenants = await (orm.em.fork() as EntityManager).execute<{ tenant_id: string }[]>(
    "select tenant_id from tenants_with_orphaned_executions(?, ?)",
    [instanceId, staleBefore],
  );
  let closed = 0;
  for (const { tenant_id: tenantId } of tenants) {
    const em = orm.em.fork() as EntityManager;
    scopeToTenant(em, tenantId);
    closed += await em.nativeUpdate(
      Execution,
      {
        status: { $in: UNFINISHED },
        $or: [{ instanceId }, { heartbeatTime: { $lt: staleBefore } }, { heartbeatTime: null, createTime: { $lt: staleBefore } }],
      },
      {
        status: "FAILED",
        endTime: now,
        errorCode: "UNAVAILABLE",
        errorMessage: "the server running this execution stopped before it finished",
      },
    );
  }
  return closed;
}
