import { type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import {
  DeadlockException,
  ForeignKeyConstraintViolationException,
  OptimisticLockError,
  UniqueConstraintViolationException,
} from "@mikro-orm/core";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
} from "../../../gen/google/rpc/error_details_pb.js";
import {
  AlreadyExistsError,
  DomainError,
  EtagMismatchError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  QuotaExceededError,
  RateLimitedError,
  UnauthenticatedError,
} from "../../common/errors.ts";
import { decodeErrorViolation } from "../../common/decode-error-field.ts";
import { isConnectionFailure } from "../../db/connection-failures.ts";
import type { Logger } from "../../log.ts";
import { requestSignalKey } from "../../call-context.ts";

/** ErrorInfo.domain of every error this service raises. */
export const ERROR_DOMAIN = "agent-platform";

/**
 * The one place that turns errors into gRPC statuses. Domain errors keep
 * their message and gain google.rpc details; database and unknown errors
 * become generic statuses, and their cause is logged here, never sent.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const where = { procedure: `${req.service.typeName}/${req.method.name}` };
    // The deadline interceptor (inside this one) puts the call's signal here.
    const signal = () => req.contextValues.get(requestSignalKey) ?? req.signal;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: mapStreamErrors(res.message, logger, where, signal) };
    } catch (err) {
      throw toConnectError(err, logger, where, signal());
    }
  };
}

async function* mapStreamErrors<T>(
  messages: AsyncIterable<T>,
  logger: Logger,
  where: Record<string, string>,
  signal: () => AbortSignal,
) {
  try {
    yield* messages;
  } catch (err) {
    throw toConnectError(err, logger, where, signal());
  }
}

/**
 * Maps any thrown value to the ConnectError a client should see. `signal` is
 * the call's: once it has fired (deadline, client cancel, shutdown), what
 * failed underneath (a query cancelled in PostgreSQL, an aborted connection
 * wait) failed because of it, and the call ends with the signal's status.
 */
export function toConnectError(
  err: unknown,
  logger: Logger,
  where: Record<string, string> = {},
  signal?: AbortSignal,
): ConnectError {
  if (err instanceof ConnectError) {
    return err;
  }
  if (err instanceof DomainError) {
    return fromDomainError(err);
  }
  if (signal?.aborted) {
    logger.debug("call ended by its signal", { ...where, error: err });
    return signal.reason instanceof ConnectError
      ? new ConnectError(signal.reason.rawMessage, signal.reason.code)
      : new ConnectError("the call was cancelled or ran past its deadline", Code.DeadlineExceeded);
  }
  const failure = databaseFailure(err);
  if (failure === "unavailable") {
    logger.error("database unavailable", { ...where, error: err });
    return new ConnectError("the database is unavailable; retry later", Code.Unavailable, undefined, [
      detail(ErrorInfoSchema, { reason: "DATABASE_UNAVAILABLE", domain: ERROR_DOMAIN }),
    ]);
  }
  if (failure === "cancelled") {
    logger.warn("database query cancelled", { ...where, error: err });
    return new ConnectError("the database cancelled the query: it ran past its deadline", Code.DeadlineExceeded);
  }
  if (failure === "conflict") {
    logger.warn("transaction conflict", { ...where, error: err });
    return new ConnectError("the transaction conflicted with a concurrent one; retry", Code.Aborted, undefined, [
      detail(ErrorInfoSchema, { reason: "TRANSACTION_CONFLICT", domain: ERROR_DOMAIN }),
    ]);
  }
  if (failure === "invalid data") {
    logger.warn("value refused by the database", { ...where, error: err });
    return new ConnectError("a value in the request cannot be stored or compared", Code.InvalidArgument, undefined, [
      detail(ErrorInfoSchema, { reason: "INVALID_VALUE", domain: ERROR_DOMAIN }),
    ]);
  }
  if (err instanceof UniqueConstraintViolationException) {
    return new ConnectError("a resource with the same unique key already exists", Code.AlreadyExists, undefined, [
      detail(ErrorInfoSchema, { reason: "ALREADY_EXISTS", domain: ERROR_DOMAIN }),
    ]);
  }
  if (err instanceof OptimisticLockError) {
    return new ConnectError("the resource was changed concurrently; read it again", Code.Aborted, undefined, [
      detail(ErrorInfoSchema, { reason: "CONCURRENT_MODIFICATION", domain: ERROR_DOMAIN }),
    ]);
  }
  if (err instanceof ForeignKeyConstraintViolationException) {
    logger.warn("foreign key violation", { ...where, error: err });
    return new ConnectError("the resource is referenced by or refers to another", Code.FailedPrecondition);
  }
  if (isAbort(err)) {
    return new ConnectError("the call was cancelled or ran past its deadline", Code.DeadlineExceeded);
  }
  logger.error("internal error", { ...where, error: err });
  return new ConnectError("internal error", Code.Internal);
}

function fromDomainError(err: DomainError): ConnectError {
  const info = detail(ErrorInfoSchema, { reason: err.reason, domain: ERROR_DOMAIN, metadata: err.metadata });
  if (err instanceof NotFoundError) return new ConnectError(err.message, Code.NotFound, undefined, [info]);
  if (err instanceof AlreadyExistsError) return new ConnectError(err.message, Code.AlreadyExists, undefined, [info]);
  if (err instanceof EtagMismatchError) return new ConnectError(err.message, Code.Aborted, undefined, [info]);
  if (err instanceof PermissionDeniedError) return new ConnectError(err.message, Code.PermissionDenied, undefined, [info]);
  if (err instanceof UnauthenticatedError) return new ConnectError(err.message, Code.Unauthenticated, undefined, [info]);
  if (err instanceof InvalidArgumentError) {
    return new ConnectError(err.message, Code.InvalidArgument, undefined, [
      detail(BadRequestSchema, { fieldViolations: err.violations }),
      info,
    ]);
  }
  if (err instanceof FailedPreconditionError) {
    return new ConnectError(err.message, Code.FailedPrecondition, undefined, [
      detail(PreconditionFailureSchema, { violations: err.violations }),
      info,
    ]);
  }
  if (err instanceof RateLimitedError) {
    return new ConnectError(err.message, Code.ResourceExhausted, undefined, [
      detail(RetryInfoSchema, { retryDelay: durationFromMs(err.retryAfterMs) }),
      info,
    ]);
  }
  if (err instanceof QuotaExceededError) {
    return new ConnectError(err.message, Code.ResourceExhausted, undefined, [
      detail(QuotaFailureSchema, { violations: err.violations }),
      info,
    ]);
  }
  return new ConnectError(err.message, Code.Unknown, undefined, [info]);
}

function detail<Desc extends DescMessage>(desc: Desc, value: MessageInitShape<Desc>) {
  return { desc, value };
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/**
 * What a database failure means to the caller: unreachable (see
 * isConnectionFailure: admin or crash shutdown, cannot connect now, class
 * 08, a dead or unobtainable connection), cancelled (57014: a deadline's
 * cancel), a serialization failure or deadlock (40001, 40P01), or a value
 * PostgreSQL refuses (class 22: out-of-range numbers, malformed text...).
 * Looks through wrappers: MikroORM's DriverException copies the driver
 * error's fields; others set `cause`.
 */
function databaseFailure(err: unknown): "unavailable" | "cancelled" | "conflict" | "invalid data" | undefined {
  if (isConnectionFailure(err)) return "unavailable";
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof DeadlockException) return "conflict";
    const code = (e as { code?: unknown }).code;
    if (typeof code !== "string" || code.length !== 5) continue;
    if (code === "57014") return "cancelled";
    if (code === "40001" || code === "40P01") return "conflict";
    if (code.startsWith("22")) return "invalid data";
  }
  return undefined;
}

/**
 * INVALID_ARGUMENT for a request body that does not decode (random bytes,
 * truncated protobuf, invalid UTF-8, nesting past the decoder's limit, JSON
 * that is not the message's: unknown field or enum names included): an
 * ErrorInfo with reason MALFORMED_REQUEST, and a BadRequest when the
 * decoder's error names a field of `input`. `cause` is the ConnectError
 * connect made of the failure, or what protobuf-es `fromBinary` threw: a
 * second transport decodes through its own path and answers through here,
 * so that an undecodable body gets the same answer on both.
 */
export function malformedRequestError(cause: unknown, input?: DescMessage): ConnectError {
  const message =
    cause instanceof ConnectError ? cause.rawMessage : `parse binary: ${cause instanceof Error ? cause.message : String(cause)}`;
  const violation = input && decodeErrorViolation(cause, input);
  return new ConnectError(
    message,
    Code.InvalidArgument,
    undefined,
    [
      ...(violation ? [detail(BadRequestSchema, { fieldViolations: [violation] })] : []),
      detail(ErrorInfoSchema, { reason: "MALFORMED_REQUEST", domain: ERROR_DOMAIN }),
    ],
    cause,
  );
}

/**
 * Request gate (connectNodeAdapter's `requestGate`): a request body that
 * does not decode fails outside every interceptor, so errorInterceptor never
 * sees it: connect answers a binary one INTERNAL and a JSON one
 * INVALID_ARGUMENT, both without details. The gate runs before the body is
 * read and watches the call's signal, which connect aborts with that error
 * just before writing it; the error is the object connect then writes, so
 * it is rewritten in place into malformedRequestError's answer.
 */
export function clientDecodeErrors(context: HandlerContext): void {
  context.signal.addEventListener(
    "abort",
    () => {
      const reason: unknown = context.signal.reason;
      if (!isDecodeFailure(reason)) return;
      const mapped = malformedRequestError(reason, context.method.input);
      Object.defineProperty(reason, "code", { value: mapped.code });
      reason.details.push(...mapped.details);
    },
    { once: true },
  );
}

/** Is this the error connect raises for a request body its decoder refused? */
function isDecodeFailure(reason: unknown): reason is ConnectError {
  if (!(reason instanceof ConnectError) || reason.details.length > 0) return false;
  // Binary: connect wraps whatever fromBinary threw as INTERNAL "parse binary: …".
  if (reason.code === Code.Internal) return reason.rawMessage.startsWith("parse binary:");
  // JSON: protobuf-es' own "cannot decode …" error, passed on as INVALID_ARGUMENT.
  return (
    reason.code === Code.InvalidArgument &&
    reason.cause instanceof Error &&
    !(reason.cause instanceof ConnectError) &&
    reason.rawMessage.startsWith("cannot decode ")
  );
}
