import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Refuses new calls once shutdown has begun: calls that arrive on a
 * connection still open get UNAVAILABLE, which clients retry elsewhere.
 */
export function drainInterceptor(draining: () => boolean): Interceptor {
  return (next) => async (req) => {
    if (draining()) {
      throw shuttingDown();
    }
    return next(req);
  };
}

/** The error of a call that arrives while the server drains. */
export function shuttingDown(): ConnectError {
  return new ConnectError("the server is shutting down; retry", Code.Unavailable);
}
