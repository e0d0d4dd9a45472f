import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse, OutgoingHttpHeaders } from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { createContextKey, createContextValues, type ConnectError, type ContextValues } from "@connectrpc/connect";
import { codeToHttpStatus, contentTypeUnaryRegExp, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { contentTypeRegExp as grpcContentType, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { contentTypeRegExp as grpcWebContentType } from "@connectrpc/connect/protocol-grpc-web";
import { operatorMayCall, requirementOf } from "../auth/policy.ts";
import { roleSatisfies, type Role } from "../auth/principal.ts";
import { bearerTokenOf, type Authenticator } from "../auth/tokens.ts";
import { RateLimitedError } from "../common/errors.ts";
import { toConnectError } from "../interceptors/errors.ts";
import type { Logger } from "../log.ts";
import { refused, type RateLimiter } from "./rate-limiter.ts";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/** What early admission needs. */
export interface EarlyAdmissionOptions {
  /** The services whose methods are rate limited (the platform's own). */
  services: DescService[];
  /** The auth interceptor's authenticator: its cache of verified tokens. */
  authenticator: Authenticator;
  limiter: RateLimiter;
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

/**
 * The tenant of a call whose token was already taken before it was read
 * (createEarlyAdmission); the rate-limit interceptor takes none for it.
 */
export const admittedTenantKey = createContextKey<string | undefined>(undefined, {
  description: "tenant admitted by the rate limit before the call was read",
});

/** Rate limiting before a call is read, and what it tells Connect. */
export interface EarlyAdmission {
  /** Admits (`next`) or refuses the call before anything reads it. */
  handle(req: Request, res: Response, next: () => void): void;
  /** connectNodeAdapter's `contextValues`: marks a call admitted here. */
  contextValues(req: Request): ContextValues;
}

/**
 * Applies the tenant rate limit before Connect reads the call: no body
 * read, no message decoded, no interceptor run for a call that is refused.
 * A tenant flooding the service at many times its limit then costs the
 * server little more than the HTTP/2 streams it opens, and the other
 * tenants' calls do not queue behind its refusals; its calls beyond the
 * takes in flight wait unread in the tenant's line (RateLimiter), and are
 * refused there once a take finds the bucket empty.
 *
 * It decides only what it is sure of, and passes everything else on
 * (`next`) to the full path, where the rate-limit interceptor decides after
 * authentication: a method that is rate limited (not public, not one an
 * operator may call naming the tenant in the body), a bearer token verified
 * a moment ago (the authenticator's cache) whose principal holds the role
 * the method needs, and a protocol whose refusal it can write without the
 * body: gRPC (trailers-only), gRPC-Web (status in the headers) and Connect
 * unary (HTTP 429 with the JSON error). The refusal is Connect's own
 * encoding of the error interceptor's error, so it is what the full path
 * sends.
 */
export function createEarlyAdmission(options: EarlyAdmissionOptions): EarlyAdmission {
  const needs = new Map<string, { role: Role; get: boolean }>();
  for (const service of options.services) {
    for (const method of service.methods) {
      const needed = requirementOf(service, method.name);
      if (needed === undefined || needed === "public" || needed === "operator") continue;
      if (operatorMayCall(service, method.name)) continue;
      // Connect serves GET for side-effect-free methods only.
      needs.set(`/${service.typeName}/${method.name}`, { role: needed, get: method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS });
    }
  }
  const prepared = new Map<number, Prepared>();
  const prepare = (retryAfterMs: number): Prepared => {
    let p = prepared.get(retryAfterMs);
    if (p) return p;
    const error: ConnectError = toConnectError(refused(retryAfterMs), options.logger);
    p = {
      statusHeaders: Object.fromEntries(setTrailerStatus(new Headers(), error)),
      httpStatus: codeToHttpStatus(error.code),
      json: errorToJsonBytes(error, {}),
    };
    if (prepared.size >= MAX_PREPARED) prepared.clear();
    prepared.set(retryAfterMs, p);
    return p;
  };

  /** How to refuse this call before reading it, or undefined when its protocol needs the body read first. */
  const refusalOf = (req: Request, res: Response, get: boolean): ((retryAfterMs: number) => void) | undefined => {
    const contentType = req.headers["content-type"] ?? "";
    if (req.method === "POST" && req.httpVersionMajor === 2 && grpcContentType.test(contentType)) {
      // Trailers-only: one HEADERS frame that ends the stream.
      return (ms) => {
        const stream = (res as Http2ServerResponse).stream;
        if (stream.destroyed || stream.headersSent) return;
        stream.respond(
          { ...res.getHeaders(), ":status": 200, "content-type": contentType, ...prepare(ms).statusHeaders } as OutgoingHttpHeaders,
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
    // (src/http/listener.ts), as the full path does with a body too large.
    return (ms) => {
      if (res.writableEnded || req.destroyed) return;
      const p = prepare(ms);
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

  const admitted = new WeakMap<Request, string>();
  return {
    handle(req, res, next) {
      const url = req.url ?? "";
      const query = url.indexOf("?");
      const needed = needs.get(query < 0 ? url : url.slice(0, query));
      if (needed === undefined || options.draining()) return next();
      const token = bearerTokenOf(req.headers.authorization);
      if (token === undefined) return next();
      const tenantHeader = req.headers["x-tenant-id"];
      const principal = options.authenticator.known(token, typeof tenantHeader === "string" ? tenantHeader : null);
      if (!principal || principal.operator || !roleSatisfies(principal.role, needed.role)) return next();
      const refuse = refusalOf(req, res, needed.get);
      if (!refuse) return next();
      // A call whose client goes away while it waits in the tenant's line
      // leaves the line, and takes no token.
      const gone = new AbortController();
      let waiting = true;
      res.once("close", () => waiting && gone.abort(CLIENT_GONE));
      options.limiter.admit(principal.tenantId, gone.signal).then(
        () => {
          waiting = false;
          admitted.set(req, principal.tenantId);
          next();
        },
        // Anything but a refusal (the tenant's limits unreadable) is the full path's to report.
        (error: unknown) => {
          waiting = false;
          if (error === CLIENT_GONE) return;
          if (error instanceof RateLimitedError) refuse(error.retryAfterMs);
          else next();
        },
      );
    },
    contextValues(req) {
      const values = createContextValues();
      const tenantId = admitted.get(req);
      if (tenantId !== undefined) values.set(admittedTenantKey, tenantId);
      return values;
    },
  };
}

function send(res: Response, status: number, headers: Record<string, string>, body?: Uint8Array): void {
  (res as ServerResponse).writeHead(status, headers);
  (res as ServerResponse).end(body);
}
