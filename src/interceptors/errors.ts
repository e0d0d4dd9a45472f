import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  ConnectionException,
  ForeignKeyConstraintViolationException,
  OptimisticLockError,
  UniqueConstraintViolationException,
} from "@mikro-orm/core";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
} from "../../gen/google/rpc/error_details_pb.js";
import {
  AlreadyExistsError,
  DomainError,
  EtagMismatchError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
} from "../common/errors.ts";
import type { Logger } from "../log.ts";

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
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: mapStreamErrors(res.message, logger, where) };
    } catch (err) {
      throw toConnectError(err, logger, where);
    }
  };
}

async function* mapStreamErrors<T>(messages: AsyncIterable<T>, logger: Logger, where: Record<string, string>) {
  try {
    yield* messages;
  } catch (err) {
    throw toConnectError(err, logger, where);
  }
}

/** Maps any thrown value to the ConnectError a client should see. */
export function toConnectError(err: unknown, logger: Logger, where: Record<string, string> = {}): ConnectError {
  if (err instanceof ConnectError) {
    return err;
  }
  if (err instanceof DomainError) {
    return fromDomainError(err);
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
  if (err instanceof ConnectionException) {
    logger.error("database unavailable", { ...where, error: err });
    return new ConnectError("the database is unavailable; retry later", Code.Unavailable);
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
  return new ConnectError(err.message, Code.Unknown, undefined, [info]);
}

function detail<Desc extends DescMessage>(desc: Desc, value: MessageInitShape<Desc>) {
  return { desc, value };
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}
