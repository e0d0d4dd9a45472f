import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse, OutgoingHttpHeaders } from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { ConnectError, createContextValues, type ContextValues } from "@connectrpc/connect";
import {
  codeToHttpStatus,
  contentTypeUnaryRegExp,
  errorToJsonBytes,
  parseTimeout as parseConnectTimeout,
} from "@connectrpc/connect/protocol-connect";
import {
  contentTypeRegExp as grpcContentType,
  parseTimeout as parseGrpcTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import { contentTypeRegExp as grpcWebContentType } from "@connectrpc/connect/protocol-grpc-web";
import { operatorMayCall, requirementOf } from "../../auth/policy.ts";
import { bearerTokenOf, type Authenticator } from "../../auth/tokens.ts";
import { DomainError, RateLimitedError } from "../../common/errors.ts";
import { toConnectError } from "../interceptors/errors.ts";
import type { Logger } from "../../log.ts";
import { admittedKey } from "./admission-interceptor.ts";
import type { Admitted, CallToAdmit } from "./admission.ts";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/** What early admission needs. */
export interface EarlyAdmissionOptions {
  /** The services whose methods are rate limited (the platform's own). */
  services: DescService[];
  /** The one admission step (admission.ts). */
  admit: (call: CallToAdmit) => Promise<Admitted>;
  /** Its authenticator: a call is decided unread only when its token was verified a moment ago. */
  authenticator: Pick<Authenticator, "known">;
  /** The default deadline of calls without one, and the longest a client may ask for, in ms. */
  defaultDeadlineMs: number;
  maxTimeoutMs: number;
  /** The most a request body may hold; a refused call's body is read and dropped up to it. */
  maxBodyBytes: number;
  /** True while the server drains: every call then gets the drain interceptor's answer. */
  draining: () => boolean;
  logger: Logger;
}

// Why a call waiting in its tenant's line stopped waiting.
const CLIENT_GONE = new Error("the client went away before its call was admitted");

// The wire answers of a refusal, by retry delay (ms); at most this many kept.
const MAX_PREPARED = 2_000;

/** A refusal in the three encodings, made once per delay. */
interface Prepared {
  /** gRPC and gRPC-Web: the status headers (trailers-only response). */
  statusHeaders: Record<string, string>;
  /** Connect unary: HTTP status and JSON body. */
  httpStatus: number;
  json: Uint8Array;
}

/** Admission before Connect reads a call, and what it tells Connect. */
export interface EarlyAdmission {
  /** Admits (`next`) or refuses the call before anything reads it. */
  handle(req: Request, res: Response, next: () => void): void;
  /** connectNodeAdapter's `contextValues`: marks a call admitted here. */
  contextValues(req: Request): ContextValues;
}

/**
 * Runs the one admission step (admission.ts) before Connect reads the call:
 * no body read, no message decoded, no interceptor run for a call that is
 * refused. A tenant flooding the service at many times its limit then costs
 * the server little more than the HTTP/2 streams it opens, and the other
 * tenants' calls do not queue behind its refusals; its calls wait unread in
 * the tenant's lines (rate limit, fair share).
 *
 * It takes only the calls it can decide unread, and passes everything else
 * on (`next`), where the admission interceptor runs the same step: a method
 * that is not public and not one an operator may call naming the tenant in
 * the body, a bearer token verified a moment ago (the authenticator's
 * cache), and a protocol whose refusal it can write without the body: gRPC
 * (trailers-only), gRPC-Web (status in the headers) and Connect unary (the
 * HTTP status with the JSON error). The refusal is Connect's own encoding
 * of the error mapping's error, so it is what the full path sends.
 */
export function createEarlyAdmission(options: EarlyAdmissionOptions): EarlyAdmission {
  const needs = new Map<string, { method: DescMethod; get: boolean }>();
  for (const service of options.services) {
    for (const method of service.methods) {
      const needed = requirementOf(service, method.name);
      if (needed === undefined || needed === "public") continue;
      if (operatorMayCall(service, method.name)) continue;
      // Connect serves GET for side-effect-free methods only.
      needs.set(`/${service.typeName}/${method.name}`, {
        method,
        get: method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
      });
    }
  }
  const encode = (error: ConnectError): Prepared => ({
    statusHeaders: Object.fromEntries(setTrailerStatus(new Headers(), error)),
    httpStatus: codeToHttpStatus(error.code),
    json: errorToJsonBytes(error, {}),
  });
  // A flooding tenant's refusals differ only in their delay: encoded once per delay.
  const prepared = new Map<number, Prepared>();
  const refusal = (error: unknown): Prepared => {
    if (!(error instanceof RateLimitedError)) return encode(toConnectError(error, options.logger));
    let p = prepared.get(error.retryAfterMs);
    if (p) return p;
    p = encode(toConnectError(error, options.logger));
    if (prepared.size >= MAX_PREPARED) prepared.clear();
    prepared.set(error.retryAfterMs, p);
    return p;
  };
  /** The call's deadline in ms: the client's (gRPC, gRPC-Web or Connect header), else the default one. */
  const deadlineMsOf = (req: Request): number => {
    const grpcTimeout = req.headers["grpc-timeout"];
    const connectTimeout = req.headers["connect-timeout-ms"];
    const client =
      typeof grpcTimeout === "string"
        ? parseGrpcTimeout(grpcTimeout, options.maxTimeoutMs).timeoutMs
        : typeof connectTimeout === "string"
          ? parseConnectTimeout(connectTimeout, options.maxTimeoutMs).timeoutMs
          : undefined;
    return client ?? options.defaultDeadlineMs;
  };

  /** How to answer this call with an error before reading it, or undefined when its protocol needs the body read first. */
  const refusalOf = (req: Request, res: Response, get: boolean): ((p: Prepared) => void) | undefined => {
    const contentType = req.headers["content-type"] ?? "";
    if (req.method === "POST" && req.httpVersionMajor === 2 && grpcContentType.test(contentType)) {
      // Trailers-only: one HEADERS frame that ends the stream.
      return (p) => {
        const stream = (res as Http2ServerResponse).stream;
        if (stream.destroyed || stream.headersSent) return;
        stream.respond(
          { ...res.getHeaders(), ":status": 200, "content-type": contentType, ...p.statusHeaders } as OutgoingHttpHeaders,
          { endStream: true },
        );
        req.resume();
      };
    }
    let answer: (p: Prepared) => void;
    if (req.method === "POST" && grpcWebContentType.test(contentType)) {
      answer = (p) => send(res, 200, { "content-type": contentType, ...p.statusHeaders });
    } else if ((req.method === "POST" && contentTypeUnaryRegExp.test(contentType)) || (req.method === "GET" && get)) {
      answer = (p) => send(res, p.httpStatus, { "content-type": "application/json" }, p.json);
    } else {
      // Connect streaming: the full path refuses it the same way.
      return undefined;
    }
    // The body is read to its end (and dropped) first, so an HTTP/1.1
    // connection can carry the client's next call; past the message size
    // limit the answer goes at once and the connection closes after it
    // (pipeline/listener.ts), as the full path does with a body too large.
    return (p) => {
      if (res.writableEnded || req.destroyed) return;
      if (req.readableEnded) return answer(p);
      let read = 0;
      const onData = (chunk: Buffer) => {
        read += chunk.length;
        if (read <= options.maxBodyBytes) return;
        req.off("data", onData).pause();
        answer(p);
      };
      req.on("data", onData);
      req.once("end", () => res.writableEnded || answer(p));
      req.once("error", () => res.destroy());
    };
  };

  // Calls admitted here, with what admission holds for them.
  const admitted = new WeakMap<Request, Admitted>();
  return {
    handle(req, res, next) {
      const url = req.url ?? "";
      const query = url.indexOf("?");
      const needed = needs.get(query < 0 ? url : url.slice(0, query));
      if (needed === undefined || options.draining()) return next();
      const authorization = req.headers.authorization ?? null;
      const token = bearerTokenOf(authorization);
      if (token === undefined) return next();
      const tenantHeader = typeof req.headers["x-tenant-id"] === "string" ? req.headers["x-tenant-id"] : null;
      if (!options.authenticator.known(token, tenantHeader)) return next();
      const refuse = refusalOf(req, res, needed.get);
      if (!refuse) return next();
      // A call whose client goes away while it waits in one of the tenant's
      // lines leaves it (and takes no token if it was waiting for one).
      const gone = new AbortController();
      let waiting = true;
      res.once("close", () => waiting && gone.abort(CLIENT_GONE));
      options
        .admit({
          method: needed.method,
          authorization,
          tenantHeader,
          // Never asked: no method an operator may call is decided here.
          message: () => ({}),
          signal: () => AbortSignal.any([gone.signal, AbortSignal.timeout(deadlineMsOf(req))]),
        })
        .then(
          (call) => {
            waiting = false;
            // Gone at the moment its turn came: the turn passes on at once.
            if (gone.signal.aborted) return call.release();
            // Its share ends with its answer: an HTTP/2 stream the client
            // keeps open after the answer (a body it is still sending)
            // must not hold it, and only the stream itself says when its
            // answer is finished (the compatibility response waits for
            // the whole stream to close).
            const answered = (res as Partial<Http2ServerResponse>).stream ?? res;
            answered.once("finish", call.release).once("close", call.release);
            admitted.set(req, call);
            next();
          },
          // Refusals are answered here; anything else (the tenant's limits
          // unreadable) is the full path's to report.
          (error: unknown) => {
            waiting = false;
            if (error === CLIENT_GONE || gone.signal.aborted) return;
            if (error instanceof DomainError || error instanceof ConnectError || isTimeout(error)) refuse(refusal(error));
            else next();
          },
        );
    },
    contextValues(req) {
      const values = createContextValues();
      const call = admitted.get(req);
      if (call) values.set(admittedKey, call);
      return values;
    },
  };
}

/** The deadline's own abort reason: a call that waited in its tenant's line past its deadline. */
function isTimeout(error: unknown): boolean {
  return error instanceof Error && error.name === "TimeoutError";
}

function send(res: Response, status: number, headers: Record<string, string>, body?: Uint8Array): void {
  (res as ServerResponse).writeHead(status, headers);
  (res as ServerResponse).end(body);
}
