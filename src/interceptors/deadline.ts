import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";

/** The signal that ends a request: client cancel, client deadline, or the default deadline. */
export const requestSignalKey = createContextKey<AbortSignal | undefined>(undefined, {
  description: "request signal with deadline",
});

// Headers through which gRPC, gRPC-Web and Connect clients send their deadline.
const TIMEOUT_HEADERS = ["grpc-timeout", "connect-timeout-ms"];

/**
 * Gives unary calls without a client deadline a default one, so a call can
 * never hang forever; the resulting signal also cancels the call's database
 * queries. Streams keep only the client's deadline: health Watch and
 * execution streams are meant to stay open.
 */
export function deadlineInterceptor(defaultDeadlineMs: number): Interceptor {
  return (next) => async (req) => {
    const clientDeadline = TIMEOUT_HEADERS.some((h) => req.header.has(h));
    if (req.stream || clientDeadline) {
      req.contextValues.set(requestSignalKey, req.signal);
      return next(req);
    }
    const timer = new AbortController();
    const handle = setTimeout(
      () => timer.abort(new ConnectError(`no answer within the default deadline of ${defaultDeadlineMs} ms`, Code.DeadlineExceeded)),
      defaultDeadlineMs,
    );
    const signal = AbortSignal.any([req.signal, timer.signal]);
    req.contextValues.set(requestSignalKey, signal);
    try {
      return await Promise.race([next(req), rejectOnAbort(signal)]);
    } finally {
      clearTimeout(handle);
    }
  };
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(ConnectError.from(signal.reason, Code.DeadlineExceeded));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
}
