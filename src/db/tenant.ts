import { p, type EntityManager, type EventArgs, type EventSubscriber } from "@mikro-orm/core";

/**
 * Tenant scoping in the ORM: the global `tenant` filter and the stamp that
 * writes `tenant_id` on insert. The auth interceptor is the only code that
 * sets the tenant (through `scopeToTenant`); nothing else in the service
 * names a tenant.
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

/** Sets the tenant on a forked, request-scoped EntityManager. */
export function scopeToTenant(em: EntityManager, tenantId: string): void {
  em.setFilterParams(TENANT_FILTER, { tenantId });
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
