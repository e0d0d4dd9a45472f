import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { forEachTenantWithWork } from "../db/system-jobs.ts";
import { Execution } from "./execution.entity.ts";
import { ExecutionRepository } from "./execution.repository.ts";
import { ExecutionPurge, ExecutionRetention } from "./retention.entity.ts";

/** Days executions are kept when a tenant set nothing. */
export const DEFAULT_RETENTION_DAYS = 90;

// Rows deleted per statement: short transactions, no long locks.
const BATCH = 1000;

/** The tenant's retention in days. */
export async function retentionDays(em: EntityManager): Promise<number> {
  const setting = await em.findOne(ExecutionRetention, {});
  return setting?.retentionDays ?? DEFAULT_RETENTION_DAYS;
}

/** Sets the tenant's retention. */
export async function setRetentionDays(em: EntityManager, days: number): Promise<void> {
  const setting = await em.findOne(ExecutionRetention, {});
  if (setting) setting.retentionDays = days;
  else em.create(ExecutionRetention, { retentionDays: days } as ExecutionRetention);
  await em.flush();
}

/**
 * Deletes the tenant's executions created before `olderThan`, in batches of
 * their own transaction each (children and events go with them by cascade),
 * and records the purge.
 */
export async function purgeExecutions(em: EntityManager, olderThan: Date, actor: string): Promise<ExecutionPurge> {
  let count = 0;
  const repo = new ExecutionRepository(em);
  for (;;) {
    const batch = await em.find(Execution, { createTime: { $lt: olderThan } }, { fields: ["id"], limit: BATCH });
    if (batch.length === 0) break;
    // Children go with their parent (the foreign key cascades); naming them
    // in the delete makes the count say every execution that went.
    const ids = batch.map((e) => e.id);
    const children = (await Promise.all(ids.map((id) => repo.descendants(id)))).flat().map((c) => c.id);
    count += await em.nativeDelete(Execution, { id: { $in: [...new Set([...ids, ...children])] } });
    em.clear();
  }
  const purge = em.create(ExecutionPurge, { count, olderThan, actor } as ExecutionPurge);
  await em.flush();
  return purge;
}

/** The tenant's latest purges, newest first. */
export async function recentPurges(em: EntityManager, limit = 10): Promise<ExecutionPurge[]> {
  return em.find(ExecutionPurge, {}, { orderBy: { createTime: "desc" }, limit });
}

/** Applies every tenant's retention, tenant by tenant (see forEachTenantWithWork). */
export async function applyRetention(orm: MikroORM, now = new Date()): Promise<number> {
  return forEachTenantWithWork(
    orm,
    "select tenant_id from tenants_with_expired_executions(?, ?)",
    [now, DEFAULT_RETENTION_DAYS],
    async (em) => {
      const olderThan = new Date(now.getTime() - (await retentionDays(em)) * 86_400_000);
      if ((await em.count(Execution, { createTime: { $lt: olderThan } })) === 0) return 0;
      return (await purgeExecutions(em, olderThan, "retention")).count;
    },
  );
}
