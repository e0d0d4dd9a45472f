import type { Interceptor } from "@connectrpc/connect";
import { principalKey } from "../auth/principal.ts";
import { requestSignalKey } from "../interceptors/deadline.ts";
import type { TenantLines } from "./lines.ts";

// Unary calls that wait on something besides the database (ExecuteAgent
// waits for its run, for as long as the run takes): a share held for that
// long would stall the tenant's short calls behind it.
const LONG_CALLS = new Set(["agentplatform.v1.ExecutionService/ExecuteAgent"]);

/**
 * Each tenant's fair share of this process: at most the lines' width of a
 * tenant's unary calls do their database work at once; the tenant's other
 * calls wait in its own line, right before their work starts. A tenant that
 * sends hundreds of admitted calls at once (its burst) then fills its own
 * line, not the database pool's queue, where every other tenant's calls
 * would wait behind them. Streams and LONG_CALLS hold no share, nor do
 * platform operators (never held up behind the tenant they act on).
 */
export function fairShareInterceptor(lines: TenantLines): Interceptor {
  return (next) => async (req) => {
    const principal = req.contextValues.get(principalKey);
    if (!principal || principal.operator || req.stream || LONG_CALLS.has(`${req.service.typeName}/${req.method.name}`)) {
      return next(req);
    }
    await lines.enter(principal.tenantId, req.contextValues.get(requestSignalKey) ?? req.signal);
    try {
      return await next(req);
    } finally {
      lines.leave(principal.tenantId);
    }
  };
}
