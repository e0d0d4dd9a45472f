import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { scopeToTenant } from "./tenant.ts";

/**
 * How system jobs (agent purge, execution retention, orphan sweep) span
 * tenants: a SECURITY DEFINER function named in `tenantsSql` returns only
 * the ids of tenants with work (read from the rows themselves, never from
 * input; row-level security hides every row from a connection without a
 * tenant), then `work` runs once per tenant on an EntityManager scoped to it,
 * like any handler. Returns the sum of what `work` returns.
 */
export async function forEachTenantWithWork(
  orm: MikroORM,
  tenantsSql: string,
  params: unknown[],
  work: (em: EntityManager) => Promise<number>,
): Promise<number> {
  const tenants = await (orm.em.fork() as EntityManager).execute<{ tenant_id: string }[]>(tenantsSql, params);
  let total = 0;
  for (const { tenant_id: tenantId } of tenants) {
    const em = orm.em.fork() as EntityManager;
    scopeToTenant(em, tenantId);
    total += await work(em);
  }
  return total;
}
