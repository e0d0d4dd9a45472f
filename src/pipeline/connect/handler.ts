import type { ContextValues, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { clientDecodeErrors } from "../interceptors/errors.ts";
import type { Handler } from "../listener.ts";
import type { ServiceEntry } from "../service-entry.ts";

/** What the Connect path is built from; server.ts gives it. */
export interface ConnectPathOptions {
  /** The services and their implementations, the same the gRPC path serves. */
  services: ServiceEntry[];
  /** Around every call, outermost first. */
  interceptors: Interceptor[];
  /** Largest message read or written, in bytes. */
  maxMessageBytes: number;
  /** Longest deadline a client may ask for, in ms. */
  maxTimeoutMs: number;
  /** Aborts the calls still running when the shutdown grace ends. */
  shutdownSignal: AbortSignal;
  /** The context values a call starts with (what admission put there before it was read). */
  contextValues: (req: Parameters<Handler>[0]) => ContextValues;
}

/**
 * The Connect path: connect-node serves the Connect protocol and gRPC-Web
 * (HTTP/1.1, and HTTP/2 where browsers negotiate it), and gRPC wherever the
 * gRPC path does not take it (TLS, GRPC_PATH=connect).
 */
export function createConnectPath(options: ConnectPathOptions): Handler {
  return connectNodeAdapter({
    routes: (router) => {
      for (const { service, impl } of options.services) router.service(service, impl);
    },
    interceptors: options.interceptors,
    readMaxBytes: options.maxMessageBytes,
    writeMaxBytes: options.maxMessageBytes,
    maxTimeoutMs: options.maxTimeoutMs,
    shutdownSignal: options.shutdownSignal,
    requestGate: clientDecodeErrors,
    // Unknown JSON field and enum names are refused (connect ignores them by default).
    jsonOptions: { ignoreUnknownFields: false },
    contextValues: options.contextValues,
  }) as Handler;
}
