import type { Interceptor } from "@connectrpc/connect";
import { principalKey } from "../auth/principal.ts";
import { requestSignalKey } from "../interceptors/deadline.ts";
import type { RateLimiter } from "./rate-limiter.ts";

/**
 * Applies the caller's tenant rate limit to every authenticated call. It runs
 * right after the auth interceptor and before validation and any database
 * work of the call, so a refused call costs almost nothing. Public methods
 * (health, reflection) have no principal and are not limited; neither are
 * platform operators, who must be able to reach a tenant that is being
 * throttled (to raise its limit, for one).
 */
export function rateLimitInterceptor(limiter: RateLimiter): Interceptor {
  return (next) => async (req) => {
    const principal = req.contextValues.get(principalKey);
    if (principal && !principal.operator) {
      await limiter.admit(principal.tenantId, req.contextValues.get(requestSignalKey) ?? req.signal);
    }
    return next(req);
  };
}
