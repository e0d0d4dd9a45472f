import type { DescMethod } from "@bufbuild/protobuf";
import { PermissionDeniedError, UnauthenticatedError } from "../../common/errors.ts";
import { operatorMayCall, requirementOf, type Requirement } from "../../auth/policy.ts";
import { roleSatisfies, type Principal } from "../../auth/principal.ts";
import { bearerTokenOf, type Authenticator } from "../../auth/tokens.ts";
import type { TenantLines } from "./lines.ts";
import type { RateLimiter } from "./rate-limiter.ts";

/** What admission needs; server.ts gives it. */
export interface AdmissionOptions {
  /** Verifies tokens, keeping the ones verified a moment ago. */
  authenticator: Authenticator;
  /** The tenants' rate limits; without it, none. */
  limiter?: RateLimiter;
  /** The tenants' fair shares; without them, none. */
  shares?: TenantLines;
}

/** A call as admission sees it: before its body is read. */
export interface CallToAdmit {
  method: DescMethod;
  /** The `authorization` header, if any. */
  authorization: string | null;
  /** The `x-tenant-id` header, if any. */
  tenantHeader: string | null;
  /**
   * The decoded request, for the methods an operator may call naming the
   * tenant in its `tenant_id` field; only called for those.
   */
  message: () => object;
  /**
   * Ends waits (rate-limit line, fair share): the call's deadline (the
   * default one for a unary call without its own) or its cancellation.
   * Asked for only when the call may wait: public calls need none.
   */
  signal(): AbortSignal;
}

/** An admitted call. */
export interface Admitted {
  /** The caller; undefined for public methods. */
  principal: Principal | undefined;
  /** Gives back the call's fair share, if it holds one; call once, with its answer. */
  release(): void;
}

// Unary calls that wait on something besides the database (ExecuteAgent
// waits for its run, for as long as the run takes): a share held for that
// long would stall the tenant's short calls behind it.
const LONG_CALLS = new Set(["agentplatform.v1.ExecutionService/ExecuteAgent"]);

/**
 * Whether a call of `method` holds one of its tenant's fair shares while it
 * runs (TenantLines): unary calls but the long ones. Streams hold none.
 */
export function takesShare(method: DescMethod): boolean {
  return method.methodKind === "unary" && !LONG_CALLS.has(`${method.parent.typeName}/${method.name}`);
}

const NOTHING_HELD = () => {};
const PUBLIC: Admitted = { principal: undefined, release: NOTHING_HELD };

/**
 * The one admission step of a call, in order: bearer token → principal
 * (the authenticator's cache of tokens verified a moment ago) → role (the
 * policy table) → the tenant's rate limit → its fair share. Refusals are
 * thrown as the domain errors the error mapping turns into the wire
 * answers (UNAUTHENTICATED, PERMISSION_DENIED with its reason,
 * RESOURCE_EXHAUSTED with RetryInfo and RATE_LIMITED); a call that waited
 * in its tenant's line past its deadline rejects with the signal's reason.
 * Platform operators are neither rate limited nor held to a share.
 *
 * The fair share: at most the lines' width of a tenant's unary calls run at
 * once in this process; the tenant's other calls wait in its own line
 * (until their deadline at most), not in the event loop's or the database
 * pool's queue, where every other tenant's calls would wait behind them.
 * Both transport paths call this once per call: the gRPC path before the
 * body is decoded, the Connect path before Connect reads the call
 * (early-admission.ts) or, when that cannot be decided unread, in the
 * admission interceptor.
 */
export function createAdmission(options: AdmissionOptions): (call: CallToAdmit) => Promise<Admitted> {
  const decisions = new Map<DescMethod, { needed: Requirement | undefined; operatorMay: boolean; share: boolean }>();
  const decisionOf = (method: DescMethod) => {
    let d = decisions.get(method);
    if (!d) {
      d = {
        needed: requirementOf(method.parent, method.name),
        operatorMay: operatorMayCall(method.parent, method.name) && method.methodKind === "unary",
        share: takesShare(method),
      };
      decisions.set(method, d);
    }
    return d;
  };
  const { authenticator, limiter, shares } = options;
  return async (call) => {
    const { needed, operatorMay, share } = decisionOf(call.method);
    if (needed === undefined) {
      throw new PermissionDeniedError("this method is not open to callers", "METHOD_NOT_IN_POLICY");
    }
    if (needed === "public") return PUBLIC;
    const token = bearerTokenOf(call.authorization);
    if (token === undefined) {
      throw new UnauthenticatedError("missing bearer token: send `authorization: Bearer <JWT>`");
    }
    const principal =
      (operatorMay ? undefined : authenticator.known(token, call.tenantHeader)) ??
      (await authenticator(token, call.tenantHeader, operatorMay ? tenantIdField(call.message()) : undefined));
    const operator = principal.operator === true;
    const allowed = needed === "operator" ? operator : operator || roleSatisfies(principal.role, needed);
    if (!allowed) {
      throw new PermissionDeniedError(`this call needs the ${needed} role`, "ROLE_REQUIRED", { role: needed });
    }
    if (operator) return { principal, release: NOTHING_HELD };
    const tenantId = principal.tenantId;
    const signal = call.signal();
    await limiter?.admit(tenantId, signal);
    if (!share || !shares) return { principal, release: NOTHING_HELD };
    if (!shares.tryEnter(tenantId)) await shares.enter(tenantId, signal);
    let held = true;
    return {
      principal,
      release() {
        if (held) shares.leave(tenantId);
        held = false;
      },
    };
  };
}

/** The `tenant_id` field of a request message ("" when empty or absent). */
function tenantIdField(message: object): string {
  const tenantId = (message as { tenantId?: unknown }).tenantId;
  return typeof tenantId === "string" ? tenantId : "";
}
