/**
 * Domain errors: plain classes thrown by repositories and handlers. One
 * interceptor (pipeline/interceptors/errors.ts) turns them into gRPC status codes with
 * google.rpc details; nothing else builds a ConnectError for them.
 */

/** A field that failed a check, as in google.rpc.BadRequest. */
export interface FieldViolation {
  /** Path of the field in the request, e.g. "tool.name". */
  field: string;
  /** What is wrong with it. */
  description: string;
}

/** A precondition that does not hold, as in google.rpc.PreconditionFailure. */
export interface PreconditionViolation {
  /** Kind of precondition, e.g. "TOOL_IN_USE". */
  type: string;
  /** What it is about, e.g. "agents/6f1c…". */
  subject: string;
  /** How to fix it. */
  description: string;
}

/** A quota a request would exceed, as in google.rpc.QuotaFailure. */
export interface QuotaViolation {
  /** What the quota is about, e.g. "tenants/acme/agents". */
  subject: string;
  /** The quota and the usage, e.g. "at most 100 live agents; the tenant has 100". */
  description: string;
}

/** Base class of every domain error. */
export class DomainError extends Error {
  /** Machine-readable reason sent as google.rpc.ErrorInfo.reason. */
  readonly reason: string;
  /** Extra ErrorInfo metadata. */
  readonly metadata: Record<string, string>;

  constructor(message: string, reason: string, metadata: Record<string, string> = {}) {
    super(message);
    this.name = new.target.name;
    this.reason = reason;
    this.metadata = metadata;
  }
}

/** The resource does not exist, or belongs to another tenant: the same answer for both. */
export class NotFoundError extends DomainError {
  constructor(resource: string, id: string) {
    super(`${resource} ${JSON.stringify(id)} not found`, `${upperSnake(resource)}_NOT_FOUND`, { [`${resource}_id`]: id });
  }
}

/** A resource with the same unique key already exists. */
export class AlreadyExistsError extends DomainError {
  constructor(message: string, reason: string, metadata: Record<string, string> = {}) {
    super(message, reason, metadata);
  }
}

/** The request is malformed beyond what the contract's validation rules catch. */
export class InvalidArgumentError extends DomainError {
  readonly violations: FieldViolation[];

  constructor(violations: FieldViolation[], reason = "INVALID_ARGUMENT") {
    super(violations.map((v) => `${v.field}: ${v.description}`).join("; "), reason);
    this.violations = violations;
  }
}

/** The system is not in the state the operation needs. */
export class FailedPreconditionError extends DomainError {
  readonly violations: PreconditionViolation[];

  constructor(message: string, reason: string, violations: PreconditionViolation[] = []) {
    super(message, reason);
    this.violations = violations;
  }
}

/** The caller's etag is stale: someone else changed the resource first. */
export class EtagMismatchError extends DomainError {
  constructor(resource: string, id: string) {
    super(`${resource} ${JSON.stringify(id)} was changed since it was read; read it again`, "ETAG_MISMATCH", {
      [`${resource}_id`]: id,
    });
  }
}

/** The caller may not do this. */
export class PermissionDeniedError extends DomainError {
  constructor(message: string, reason: string, metadata: Record<string, string> = {}) {
    super(message, reason, metadata);
  }
}

/** The caller did not prove who it is. */
export class UnauthenticatedError extends DomainError {
  constructor(message: string) {
    super(message, "UNAUTHENTICATED");
  }
}

/** The caller sent more requests than its rate limit admits; it may retry after `retryAfterMs`. */
export class RateLimitedError extends DomainError {
  /** How long to wait before the next call can be admitted, sent as google.rpc.RetryInfo. */
  readonly retryAfterMs: number;

  constructor(retryAfterMs: number, metadata: Record<string, string> = {}) {
    super("too many requests for this tenant; retry after the delay in RetryInfo", "RATE_LIMITED", metadata);
    this.retryAfterMs = retryAfterMs;
  }
}

/** The request would take the tenant past one of its quotas. */
export class QuotaExceededError extends DomainError {
  readonly violations: QuotaViolation[];

  constructor(message: string, violations: QuotaViolation[], metadata: Record<string, string> = {}) {
    super(message, "QUOTA_EXCEEDED", metadata);
    this.violations = violations;
  }
}

function upperSnake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}
