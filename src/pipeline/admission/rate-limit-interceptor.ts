import type { Interceptor } from "@connectrpc/connect";
import { principalKey, requestSignalKey } from "../../call-context.ts";
import { admittedTenantKey } from "./early-admission.ts";
import type { RateLimiter } from "./rate-limiter.ts";

/**
 * Applies the caller's tenant rate limit to every authenticated call that
 * was not already admitted before it was read (early-admission.ts: a token
 * not verified a moment ago, Connect streaming, an operator-callable
 * method). It runs right after the auth interceptor and before validation
 * and any database work of the call. Public methods
 * (health, reflection) have no principal and are not limited; neither are
 * platform operators, who must be able to reach a tenant that is being
 * throttled (to raise its limit, for one).
 */
export function rateLimitInterceptor(limiter: RateLimiter): Interceptor {
  return (next) => async (req) => {
    const principal = req.contextValues.get(principalKey);
    if (principal && !principal.operator && req.contextValues.get(admittedTenantKey) !== principal.tenantId) {
      await limiter.admit(principal.tenantId, req.contextValues.get(requestSignalKey) ?? req.signal);
    }
    return next(req);
  };
}
