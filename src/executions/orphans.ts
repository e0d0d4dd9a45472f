import type { MikroORM } from "@mikro-orm/core";
import { forEachTenantWithWork } from "../db/system-jobs.ts";
import { UNFINISHED } from "./codecs.ts";
import { Execution } from "./execution.entity.ts";

/**
 * Closes executions that no server is running any more, as FAILED with a
 * clear reason: those this instance left behind when it died (same instance
 * id, found at start-up) and those of any instance whose heartbeat stopped
 * more than `staleMs` ago, tenant by tenant (see forEachTenantWithWork).
 */
export async function failOrphans(
  orm: MikroORM,
  options: { instanceId?: string; staleMs: number },
  now = new Date(),
): Promise<number> {
  const staleBefore = new Date(now.getTime() - options.staleMs);
  // An instance id that can match no row when only stale heartbeats count.
  const instanceId = options.instanceId ?? "";
  return forEachTenantWithWork(
    orm,
    "select tenant_id from tenants_with_orphaned_executions(?, ?)",
    [instanceId, staleBefore],
    (em) =>
      em.nativeUpdate(
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
      ),
  );
}
