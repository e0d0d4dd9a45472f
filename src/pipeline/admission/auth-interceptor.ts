import type { Interceptor } from "@connectrpc/connect";
import { PermissionDeniedError, UnauthenticatedError } from "../../common/errors.ts";
import { operatorMayCall, requirementOf } from "../../auth/policy.ts";
import { roleSatisfies } from "../../auth/principal.ts";
import { principalKey } from "../../call-context.ts";
import { bearerTokenOf, type Authenticate } from "../../auth/tokens.ts";

/**
 * Authenticates the caller and decides whether it may call the method: the
 * bearer token proves the subject, tenant and role; the policy table says
 * what the method needs. Runs before validation and before any database work.
 *
 * Platform operators (role `operator`, outside any tenant) reach only the
 * methods policy.ts lets them call; those name the tenant in the request's
 * `tenant_id` field, and this is where it becomes the principal's tenant, so
 * the handlers work through an EntityManager scoped to it like any other.
 */
export function authInterceptor(authenticate: Authenticate): Interceptor {
  return (next) => async (req) => {
    const needed = requirementOf(req.service, req.method.name);
    if (needed === undefined) {
      throw new PermissionDeniedError("this method is not open to callers", "METHOD_NOT_IN_POLICY");
    }
    if (needed === "public") {
      return next(req);
    }
    const requestTenant = operatorMayCall(req.service, req.method.name) && !req.stream ? tenantIdField(req.message) : undefined;
    const principal = await authenticate(
      bearerToken(req.header.get("authorization")),
      req.header.get("x-tenant-id"),
      requestTenant,
    );
    const operator = principal.operator === true;
    const allowed = needed === "operator" ? operator : operator || roleSatisfies(principal.role, needed);
    if (!allowed) {
      throw new PermissionDeniedError(`this call needs the ${needed} role`, "ROLE_REQUIRED", { role: needed });
    }
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

/** The `tenant_id` field of a request message ("" when empty or absent). */
function tenantIdField(message: object): string {
  const tenantId = (message as { tenantId?: unknown }).tenantId;
  return typeof tenantId === "string" ? tenantId : "";
}

function bearerToken(header: string | null): string {
  const token = bearerTokenOf(header);
  if (token === undefined) {
    throw new UnauthenticatedError("missing bearer token: send `authorization: Bearer <JWT>`");
  }
  return token;
}
