import type { DescMethod } from "@bufbuild/protobuf";
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import { principalKey, requestSignalKey } from "../../call-context.ts";
import type { TenantLines } from "./lines.ts";

// Unary calls that wait on something besides the database (ExecuteAgent
// waits for its run, for as long as the run takes): a share held for that
// long would stall the tenant's short calls behind it.
const LONG_CALLS = new Set(["agentplatform.v1.ExecutionService/ExecuteAgent"]);

/** Whether a call of `method` holds one of its tenant's shares while it runs. */
export function takesShare(method: DescMethod): boolean {
  return method.methodKind === "unary" && !LONG_CALLS.has(`${method.parent.typeName}/${method.name}`);
}

/**
 * The tenant whose share a call already holds: taken before the call was
 * read (early-admission.ts), given back when its response closes.
 */
export const shareHeldKey = createContextKey<string | undefined>(undefined, {
  description: "tenant whose fair share the call took before it was read",
});

/**
 * Each tenant's fair share of this process: at most the lines' width of a
 * tenant's unary calls run at once; the tenant's other calls wait in its own
 * line. Calls admitted before they were read wait there unread (and hold
 * their share from then on); the others wait here, right before their
 * database work. A tenant that sends hundreds of admitted calls at once (its
 * burst) then fills its own line, not the event loop's or the database
 * pool's queue, where every other tenant's calls would wait behind them.
 * Streams and long calls (takesShare) hold no share, nor do platform
 * operators (never held up behind the tenant they act on).
 */
export function fairShareInterceptor(lines: TenantLines): Interceptor {
  return (next) => async (req) => {
    const principal = req.contextValues.get(principalKey);
    if (
      !principal ||
      principal.operator ||
      !takesShare(req.method) ||
      req.contextValues.get(shareHeldKey) === principal.tenantId
    ) {
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
