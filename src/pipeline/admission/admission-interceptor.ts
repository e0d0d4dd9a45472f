import { createContextKey, type Interceptor } from "@connectrpc/connect";
import { principalKey, requestSignalKey } from "../../call-context.ts";
import type { Admitted, CallToAdmit } from "./admission.ts";

/**
 * A call admitted before Connect read it (early-admission.ts); the
 * admission interceptor does not decide it again. Its share, if any, is
 * given back when its response closes.
 */
export const admittedKey = createContextKey<Admitted | undefined>(undefined, {
  description: "admission decided before the call was read",
});

/**
 * Admission on the Connect path, for the calls not admitted before they
 * were read: the same one step as everywhere (admission.ts), run once,
 * right after the deadline interceptor and before validation and any
 * database work. Platform operators (role `operator`, outside any tenant)
 * reach only the methods policy.ts lets them call; those name the tenant in
 * the request's `tenant_id` field, which is why this step can need the
 * decoded message. A unary call's fair share is given back with its answer.
 */
export function admissionInterceptor(admit: (call: CallToAdmit) => Promise<Admitted>): Interceptor {
  return (next) => async (req) => {
    const early = req.contextValues.get(admittedKey);
    if (early) {
      if (early.principal) req.contextValues.set(principalKey, early.principal);
      return next(req);
    }
    const admitted = await admit({
      method: req.method,
      authorization: req.header.get("authorization"),
      tenantHeader: req.header.get("x-tenant-id"),
      message: () => (req.stream ? {} : req.message),
      signal: () => req.contextValues.get(requestSignalKey) ?? req.signal,
    });
    if (admitted.principal) req.contextValues.set(principalKey, admitted.principal);
    try {
      return await next(req);
    } finally {
      admitted.release();
    }
  };
}
