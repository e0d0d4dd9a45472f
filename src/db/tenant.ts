import { p, type EntityManager, type EventArgs, type EventSubscriber, type MikroORM } from "@mikro-orm/core";
import { TENANT_SETTING } from "./rls.ts";

/**
 * Tenant scoping in the ORM: the global `tenant` filter and the stamp that
 * writes `tenant_id` on insert, over row-level security in the database
 * (rls.ts). Admission is the only code that sets the tenant
 * (through `scopeToTenant`); nothing else in the service names a tenant.
 */
export const TENANT_FILTER = "tenant";

/** Error thrown when tenant-owned data is touched without a tenant. */
export class MissingTenantError extends Error {
  constructor() {
    super("no tenant is set on this EntityManager");
    this.name = "MissingTenantError";
  }
}

/** Error thrown when code tries to write a row into a tenant other than its EntityManager's. */
export class TenantMismatchError extends Error {
  constructor() {
    super("a row's tenant_id differs from the EntityManager's tenant");
    this.name = "TenantMismatchError";
  }
}

/**
 * The filter's condition is a callback so that a query on an EntityManager
 * without tenant parameters fails closed (throws) instead of matching every
 * tenant. (MikroORM itself already refuses a default filter with no
 * parameters; the callback is the second lock.)
 */
export const tenantFilter = {
  name: TENANT_FILTER,
  default: true,
  cond: (args: { tenantId?: unknown } | undefined) => {
    const tenantId = args?.tenantId;
    if (typeof tenantId !== "string" || tenantId === "") {
      throw new MissingTenantError();
    }
    return { tenantId };
  },
};

/** Error thrown when an EntityManager scoped to one tenant is asked to serve another. */
export class TenantRescopeError extends Error {
  constructor() {
    super("this EntityManager is already scoped to another tenant; fork a new one");
    this.name = "TenantRescopeError";
  }
}

// Configurations of ORMs connected past row-level security (benchmarks of
// the ORM filter alone): their forks set no tenant in the database session.
const filterOnly = new WeakSet<object>();

/**
 * Benchmarks only: forks of `orm` scope by the ORM filter alone. On a
 * connection subject to row-level security this makes every query see
 * nothing, so it cannot open a gap.
 */
export function scopeByFilterOnly(orm: MikroORM): void {
  filterOnly.add(orm.config);
}

/**
 * Sets the tenant on a forked, request-scoped EntityManager: the filter's
 * parameter, and the `app.tenant_id` setting of MikroORM's session context,
 * which MikroORM applies with `set_config('app.tenant_id', $1, true)` at the
 * start of every transaction of this fork and its forks, wrapping a query
 * made outside a transaction in one of its own (find, count, native
 * updates and deletes, insert, upsert, flush, QueryBuilder, em.execute).
 * Only `em.getConnection().execute()` skips it, and so sees no tenant's rows.
 * A fork keeps its tenant: re-scoping it to another would leave the other's
 * entities in its identity map.
 */
export function scopeToTenant(em: EntityManager, tenantId: string): void {
  const current = (em.getFilterParams(TENANT_FILTER) as { tenantId?: unknown } | undefined)?.tenantId;
  if (current !== undefined && current !== tenantId) {
    throw new TenantRescopeError();
  }
  em.setFilterParams(TENANT_FILTER, { tenantId });
  if (!filterOnly.has(em.config)) {
    em.setSessionContext({ variables: { [TENANT_SETTING]: tenantId } });
  }
}

/** The tenant an EntityManager is scoped to; throws when there is none. */
export function tenantOf(em: EntityManager): string {
  const tenantId = (em.getFilterParams(TENANT_FILTER) as { tenantId?: unknown } | undefined)?.tenantId;
  if (typeof tenantId !== "string" || tenantId === "") {
    throw new MissingTenantError();
  }
  return tenantId;
}

/**
 * The `tenant_id` column of every tenant-owned entity, stamped on insert from
 * the EntityManager's filter parameters so handlers never pass a tenant.
 */
export function tenantIdProperty() {
  return p
    .string()
    .length(64)
    .index()
    .onCreate((_entity: unknown, em: EntityManager) => tenantOf(em));
}

/**
 * Refuses to insert or update a row whose tenant differs from the
 * EntityManager's: the stamp above only fills an empty `tenant_id`, and a
 * loaded entity's `tenantId` could be reassigned, so this catches code that
 * set one by hand.
 */
export class TenantGuard implements EventSubscriber {
  beforeCreate(args: EventArgs<unknown>): void {
    check(args);
  }

  beforeUpdate(args: EventArgs<unknown>): void {
    check(args);
  }
}

function check(args: EventArgs<unknown>): void {
  const entity = args.entity as { tenantId?: unknown };
  if ("tenantId" in entity && entity.tenantId !== tenantOf(args.em)) {
    throw new TenantMismatchError();
  }
}
