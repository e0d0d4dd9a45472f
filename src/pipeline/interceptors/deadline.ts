import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { requestSignalKey } from "../../call-context.ts";

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
    const aborted = rejectOnAbort(signal);
    try {
      return await Promise.race([next(req), aborted.promise]);
    } finally {
      clearTimeout(handle);
      // Connect aborts req.signal once the call is answered; that is no failure to build.
      aborted.dispose();
    }
  };
}

function rejectOnAbort(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  let fail = () => {};
  const promise = new Promise<never>((_, reject) => {
    fail = () => reject(ConnectError.from(signal.reason, Code.DeadlineExceeded));
  });
  if (signal.aborted) fail();
  else signal.addEventListener("abort", fail, { once: true });
  return { promise, dispose: () => signal.removeEventListener("abort", fail) };
}
