import { LockMode, type MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { scopeToTenant, tenantOf } from "../db/tenant.ts";
import { effectiveLimits, type Limits } from "./limits.ts";
import { TenantSettings } from "./tenant-settings.entity.ts";

/**
 * Reads a tenant's limits in force outside any request (the rate limiter's
 * cache misses), scoped to the tenant exactly as a request's own
 * EntityManager is (pipeline/interceptors/entity-manager.ts).
 */
export function tenantLimitsReader(orm: MikroORM, defaults: Limits): (tenantId: string) => Promise<Limits> {
  return async (tenantId) => {
    const em = orm.em.fork() as EntityManager;
    scopeToTenant(em, tenantId);
    return effectiveLimits(await new TenantSettingsRepository(em).find(), defaults);
  };
}

/** The tenant's settings row, through the request's tenant-scoped EntityManager. */
export class TenantSettingsRepository {
  readonly #em: EntityManager;

  constructor(em: EntityManager) {
    this.#em = em;
  }

  /** The row, or null while no operator has set anything and no quota was checked. */
  async find(): Promise<TenantSettings | null> {
    return this.#em.findOne(TenantSettings, {});
  }

  /**
   * Inside a transaction: the row, created when missing, locked (FOR UPDATE)
   * until the transaction ends. Every quota check and every limit change of
   * the tenant takes this lock first, so they run one after another.
   */
  async lock(): Promise<TenantSettings> {
    const locked = () => this.#em.findOne(TenantSettings, {}, { lockMode: LockMode.PESSIMISTIC_WRITE });
    const row = await locked();
    if (row) return row;
    // Two first-ever checks race here: one inserts, the other waits for it
    // and inserts nothing; both then lock the same row.
    await this.#em
      .createQueryBuilder(TenantSettings)
      .insert({ tenantId: tenantOf(this.#em), createTime: new Date(), version: 1 })
      .onConflict("tenantId")
      .ignore()
      .execute();
    const created = await locked();
    if (!created) throw new Error("the tenant's settings row vanished while being locked");
    return created;
  }
}
