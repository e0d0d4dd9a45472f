import * as http2 from "node:http2";
import type { Duplex } from "node:stream";
import { fromBinary, toBinary, type DescMessage, type DescMethod, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  createHandlerContext,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
} from "@connectrpc/connect";
import { invokeUnaryImplementation, transformInvokeImplementation } from "@connectrpc/connect/protocol";
import {
  Server,
  ServerCredentials,
  type Metadata,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { principalKey } from "../../call-context.ts";
import { shuttingDown } from "../interceptors/drain.ts";
import type { Admitted, CallToAdmit } from "../admission/admission.ts";
import type { ServiceEntry } from "../service-entry.ts";
import { grpcStatusOf, metadataOf } from "./status.ts";

/** What the gRPC path is built from; server.ts gives it. */
export interface GrpcPathOptions {
  /** The services and their implementations, the same the Connect path serves. */
  services: ServiceEntry[];
  /** The one admission step, run before a call's body is decoded. */
  admit: (call: CallToAdmit) => Promise<Admitted>;
  /** The interceptors around each admitted call, outermost first (errors first). */
  interceptors: Interceptor[];
  /** True while the server drains: new calls are refused UNAVAILABLE before admission. */
  draining: () => boolean;
  /** The deadline of unary calls without one, in ms: the longest a call waits for admission. */
  defaultDeadlineMs: number;
  /** Maps anything thrown outside the interceptors (admission, decoding) to the client's error. */
  toConnectError: (err: unknown, where: Record<string, string>, signal?: AbortSignal) => ConnectError;
  /** The error of a request body that does not decode (errors.ts, shared with the Connect path). */
  undecodable: (cause: unknown, input: DescMessage) => ConnectError;
  /** Largest message read or written, in bytes (larger: RESOURCE_EXHAUSTED). */
  maxMessageBytes: number;
  /** Longest deadline a client may ask for, in ms (longer: INVALID_ARGUMENT, like connect-node). */
  maxTimeoutMs: number;
  /** Aborts the calls still running when the shutdown grace ends. */
  shutdownSignal: AbortSignal;
  /** Serves the HTTP/2 streams that are not gRPC (Connect, gRPC-Web over h2c): connect-node. */
  otherStreams: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;
}

/** The gRPC path: a grpc-js server fed connections by the listener. */
export interface GrpcPath {
  /** Serves an HTTP/2 (h2c) connection, its preface not yet read. */
  injectConnection(socket: Duplex): void;
  /** GOAWAY to every connection; those still open after `graceMs` are destroyed. */
  drain(graceMs: number): void;
}

// The abort reason of a call's signal once its answer is sent (no DOMException per call).
const ANSWERED = new ConnectError("the call was answered", Code.Canceled);
const CANCELLED = new ConnectError("the client cancelled the call", Code.Canceled);

type Identity = (bytes: Buffer) => Buffer;
const identity: Identity = (bytes) => bytes;

/**
 * Serves gRPC over HTTP/2 on a grpc-js Server: the same Connect ServiceImpls
 * as the Connect path, each call with a Connect HandlerContext built from its
 * metadata and deadline and the same Connect interceptors around it; errors
 * leave as grpc-js statuses with the trailers connect-node sends
 * (status.ts). grpc-js reads the envelope (size limit, compression,
 * grpc-timeout); bodies reach the handler undecoded, so admission decides
 * before anything is decoded, and a body that does not decode gets the
 * Connect path's error.
 */
export function createGrpcPath(options: GrpcPathOptions): GrpcPath {
  const server = new Server({
    "grpc.max_receive_message_length": options.maxMessageBytes,
    "grpc.max_send_message_length": options.maxMessageBytes,
  });
  const inFlight = new Set<{ abort(reason?: unknown): void }>();
  options.shutdownSignal.addEventListener(
    "abort",
    () => {
      for (const call of inFlight) call.abort(options.shutdownSignal.reason);
    },
    { once: true },
  );

  for (const { service, impl } of options.services) {
    const spec = createServiceImplSpec(service, impl);
    for (const method of service.methods) {
      const methodSpec = spec.methods[method.localName]!;
      const path = `/${service.typeName}/${method.name}`;
      const serialize = (message: MessageShape<DescMessage>) => {
        const bytes = toBinary(method.output, message);
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      };
      switch (method.methodKind) {
        case "unary":
          server.register(path, unary(methodSpec, options, inFlight), serialize, identity, "unary");
          break;
        case "server_streaming":
          server.register(path, serverStreaming(methodSpec, options, inFlight), serialize, identity, "serverStream");
          break;
        case "bidi_streaming":
          server.register(path, bidiStreaming(methodSpec, options, inFlight), serialize, identity, "bidi");
          break;
        case "client_streaming":
          // None in the contracts; grpc-js answers UNIMPLEMENTED for an unregistered path.
          break;
      }
    }
  }
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  dispatchOtherStreams(server, options.otherStreams);
  return {
    injectConnection: (socket) => injector.injectConnection(socket),
    drain: (graceMs) => injector.drain(graceMs),
  };
}

/** A call in progress: its context, admitted or not yet. */
interface Started {
  ctx: ReturnType<typeof createHandlerContext>;
  where: Record<string, string>;
  admitted: Promise<Admitted>;
  /** Ends the call: its share back, its signal aborted, its timer cleared. */
  end(): void;
}

/** Builds the call's context from its metadata and deadline and runs admission on it. */
function start(
  method: DescMethod,
  metadata: Metadata,
  deadline: number,
  body: () => object,
  options: GrpcPathOptions,
  inFlight: Set<{ abort(reason?: unknown): void }>,
): Started {
  const header = new Headers();
  for (const [name, value] of Object.entries(metadata.getMap())) {
    header.set(name, typeof value === "string" ? value : value.toString("base64"));
  }
  let timeoutMs: number | undefined;
  let timeoutError: ConnectError | undefined;
  if (Number.isFinite(deadline)) {
    timeoutMs = Math.max(0, deadline - Date.now());
    // What the deadline interceptor reads to tell a client deadline from none.
    header.set("grpc-timeout", `${timeoutMs}m`);
    if (timeoutMs > options.maxTimeoutMs) {
      timeoutError = new ConnectError(`timeout ${timeoutMs}ms must be <= ${options.maxTimeoutMs}`, Code.InvalidArgument);
      timeoutMs = undefined;
    }
  }
  const values = createContextValues();
  const ctx = createHandlerContext({
    service: method.parent,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `/${method.parent.typeName}/${method.name}`,
    timeoutMs,
    requestHeader: header,
    contextValues: values,
  });
  inFlight.add(ctx);
  let admission: Admitted | undefined;
  let ended = false;
  const where = { procedure: `${method.parent.typeName}/${method.name}` };
  const refusal = timeoutError ?? (options.draining() ? shuttingDown() : undefined);
  const admitted = refusal
    ? Promise.reject(refusal)
    : options
        .admit({
          method,
          authorization: header.get("authorization"),
          tenantHeader: header.get("x-tenant-id"),
          message: body,
          signal: () =>
            timeoutMs === undefined && method.methodKind === "unary"
              ? AbortSignal.any([ctx.signal, AbortSignal.timeout(options.defaultDeadlineMs)])
              : ctx.signal,
        })
        .then((a) => {
          if (ended) {
            a.release();
            throw ctx.signal.reason;
          }
          admission = a;
          if (a.principal) values.set(principalKey, a.principal);
          return a;
        });
  return {
    ctx,
    where,
    admitted,
    end() {
      if (ended) return;
      ended = true;
      admission?.release();
      inFlight.delete(ctx);
      if (!ctx.signal.aborted) ctx.abort(ANSWERED);
    },
  };
}

function decode<Desc extends DescMessage>(schema: Desc, bytes: Buffer, options: GrpcPathOptions): MessageShape<Desc> {
  try {
    return fromBinary(schema, bytes);
  } catch (cause) {
    throw options.undecodable(cause, schema);
  }
}

function unary(spec: MethodImplSpec, options: GrpcPathOptions, inFlight: Set<{ abort(reason?: unknown): void }>) {
  const method = spec.method;
  return (call: ServerUnaryCall<Buffer, MessageShape<DescMessage>>, callback: sendUnaryData<MessageShape<DescMessage>>) => {
    let input: MessageShape<DescMessage> | undefined;
    const body = () => (input ??= decode(method.input, call.request, options));
    const started = start(method, call.metadata, call.getDeadline() as number, body, options, inFlight);
    const { ctx } = started;
    call.once("cancelled", () => started.ctx.abort(CANCELLED));
    started.admitted
      .then(() => invokeUnaryImplementation(spec as Extract<MethodImplSpec, { kind: "unary" }>, ctx as HandlerContext, body(), options.interceptors))
      .then(
        (output) => {
          const header = metadataOf(ctx.responseHeader);
          if (header) call.sendMetadata(header);
          started.end();
          callback(null, output, metadataOf(ctx.responseTrailer));
        },
        (err: unknown) => {
          const error = options.toConnectError(err, started.where, ctx.signal);
          started.end();
          callback(grpcStatusOf(error));
        },
      );
  };
}

function serverStreaming(spec: MethodImplSpec, options: GrpcPathOptions, inFlight: Set<{ abort(reason?: unknown): void }>) {
  const method = spec.method;
  return (call: ServerWritableStream<Buffer, MessageShape<DescMessage>>) => {
    let input: MessageShape<DescMessage> | undefined;
    const body = () => (input ??= decode(method.input, call.request, options));
    const started = start(method, call.metadata, call.getDeadline() as number, body, options, inFlight);
    call.once("cancelled", () => started.ctx.abort(CANCELLED));
    void writeAll(spec, call, started, options, async function* () {
      yield body();
    });
  };
}

function bidiStreaming(spec: MethodImplSpec, options: GrpcPathOptions, inFlight: Set<{ abort(reason?: unknown): void }>) {
  const method = spec.method;
  return (call: ServerDuplexStream<Buffer, MessageShape<DescMessage>>) => {
    // Streams never name a tenant in their body: admission needs none.
    const started = start(method, call.metadata, call.getDeadline() as number, () => ({}), options, inFlight);
    call.once("cancelled", () => started.ctx.abort(CANCELLED));
    void writeAll(spec, call, started, options, async function* () {
      for await (const bytes of call as AsyncIterable<Buffer>) yield decode(method.input, bytes, options);
    });
  };
}

/** Runs a streaming call once admitted and writes its messages, honouring backpressure. */
async function writeAll(
  spec: MethodImplSpec,
  call: ServerWritableStream<Buffer, MessageShape<DescMessage>> | ServerDuplexStream<Buffer, MessageShape<DescMessage>>,
  started: Started,
  options: GrpcPathOptions,
  input: () => AsyncIterable<MessageShape<DescMessage>>,
): Promise<void> {
  const { ctx } = started;
  try {
    await started.admitted;
    const output = transformInvokeImplementation(spec, ctx as HandlerContext, options.interceptors)(input());
    let headerSent = false;
    for await (const message of output) {
      if (!headerSent) {
        headerSent = true;
        const header = metadataOf(ctx.responseHeader);
        if (header) call.sendMetadata(header);
      }
      if (call.cancelled) break;
      if (!call.write(message)) await new Promise((resolve) => call.once("drain", resolve));
    }
    started.end();
    call.end(metadataOf(ctx.responseTrailer));
  } catch (err) {
    const error = options.toConnectError(err, started.where, ctx.signal);
    started.end();
    call.emit("error", grpcStatusOf(error));
  }
}

/**
 * grpc-js answers every HTTP/2 stream that is not application/grpc with 415.
 * The Connect protocol and gRPC-Web over h2c go to connect-node instead:
 * the injector's HTTP/2 server is grpc-js's own (no public handle to it),
 * so its stream listener is wrapped to pass those streams on, as Node's
 * compatibility API would, to `otherStreams`.
 */
function dispatchOtherStreams(
  server: Server,
  otherStreams: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
): void {
  const servers = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> }).http2Servers;
  const h2 = servers ? [...servers.keys()].at(-1) : undefined;
  if (!h2) return;
  const grpcListeners = h2.listeners("stream") as ((...args: unknown[]) => void)[];
  h2.removeAllListeners("stream");
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    const contentType = headers["content-type"];
    if (typeof contentType === "string" && contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web")) {
      for (const listener of grpcListeners) listener.call(h2, stream, headers, flags, rawHeaders);
      return;
    }
    const Request = http2.Http2ServerRequest as unknown as new (...args: unknown[]) => http2.Http2ServerRequest;
    const Response = http2.Http2ServerResponse as unknown as new (...args: unknown[]) => http2.Http2ServerResponse;
    otherStreams(new Request(stream, headers, undefined, rawHeaders), new Response(stream));
  });
}
