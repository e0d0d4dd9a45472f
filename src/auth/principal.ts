/** A role within a tenant; each includes the ones before it. */
export const ROLES = ["viewer", "editor", "admin"] as const;

/** A role within a tenant. */
export type Role = (typeof ROLES)[number];

/**
 * The platform operator's role: granted by a token outside any tenant, it
 * reaches only the tenant-settings methods (TenantService), acting on the
 * tenant the request names.
 */
export const OPERATOR_ROLE = "operator";

/** Who is calling, as proven by their token. */
export interface Principal {
  /** The token's subject (`sub`). */
  subject: string;
  /** The tenant this request acts in. */
  tenantId: string;
  /** The strongest role the token grants in that tenant. */
  role: Role | undefined;
  /**
   * True when a platform operator acts on `tenantId` (named by the request);
   * then `role` is undefined: an operator holds no role within the tenant.
   */
  operator?: boolean;
}

/** Whether `held` is at least `needed`. */
export function roleSatisfies(held: Role | undefined, needed: Role): boolean {
  return held !== undefined && ROLES.includes(needed) && ROLES.indexOf(held) >= ROLES.indexOf(needed);
}
