import type { Interceptor } from "@connectrpc/connect";
import { PermissionDeniedError, UnauthenticatedError } from "../common/errors.ts";
import { requirementOf } from "../auth/policy.ts";
import { principalKey, roleSatisfies } from "../auth/principal.ts";
import type { Authenticate } from "../auth/tokens.ts";

/**
 * Authenticates the caller and decides whether it may call the method: the
 * bearer token proves the subject, tenant and role; the policy table says
 * what the method needs. Runs before validation and before any database work.
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
    const principal = await authenticate(bearerToken(req.header.get("authorization")), req.header.get("x-tenant-id"));
    if (!roleSatisfies(principal.role, needed)) {
      throw new PermissionDeniedError(`this call needs the ${needed} role`, "ROLE_REQUIRED", { role: needed });
    }
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

function bearerToken(header: string | null): string {
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  if (!match) {
    throw new UnauthenticatedError("missing bearer token: send `authorization: Bearer <JWT>`");
  }
  return match[1]!;
}
