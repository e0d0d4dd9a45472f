import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { UnauthenticatedError } from "../common/errors.ts";

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

/** The authenticated caller of the current request; set by the auth interceptor. */
export const principalKey = createContextKey<Principal | undefined>(undefined, {
  description: "authenticated principal",
});

/** Whether `held` is at least `needed`. */
export function roleSatisfies(held: Role | undefined, needed: Role): boolean {
  return held !== undefined && ROLES.includes(needed) && ROLES.indexOf(held) >= ROLES.indexOf(needed);
}

/** The caller of a handler; only reachable for methods that need a token. */
export function principalOf(ctx: HandlerContext): Principal {
  const principal = ctx.values.get(principalKey);
  if (!principal) {
    throw new UnauthenticatedError("no principal on this request");
  }
  return principal;
}
