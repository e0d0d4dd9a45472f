import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse, OutgoingHttpHeaders } from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
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
import { roleSatisfies, type Role } from "../../auth/principal.ts";
import { bearerTokenOf, type Authenticator } from "../../auth/tokens.ts";
import { RateLimitedError } from "../../common/errors.ts";
import { toConnectError } from "../interceptors/errors.ts";
import type { Logger } from "../../log.ts";
import { shareHeldKey, takesShare } from "./fair-share-interceptor.ts";
import type { TenantLines } from "./lines.ts";
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
  /** The tenants' fair shares (fair-share-interceptor.ts), taken here for the calls admitted here. */
  shares: TenantLines;
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
  const needs = new Map<string, { role: Role; get: boolean; share: boolean }>();
  for (const service of options.services) {
    for (const method of service.methods) {
      const needed = requirementOf(service, method.name);
      if (needed === undefined || needed === "public" || needed === "operator") continue;
      if (operatorMayCall(service, method.name)) continue;
      // Connect serves GET for side-effect-free methods only.
      needs.set(`/${service.typeName}/${method.name}`, {
        role: needed,
        get: method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
        share: takesShare(method),
      });
    }
  }
  const encode = (error: ConnectError): Prepared => ({
    statusHeaders: Object.fromEntries(setTrailerStatus(new Headers(), error)),
    httpStatus: codeToHttpStatus(error.code),
    json: errorToJsonBytes(error, {}),
  });
  const prepared = new Map<number, Prepared>();
  const rateLimited = (retryAfterMs: number): Prepared => {
    let p = prepared.get(retryAfterMs);
    if (p) return p;
    p = encode(toConnectError(refused(retryAfterMs), options.logger));
    if (prepared.size >= MAX_PREPARED) prepared.clear();
    prepared.set(retryAfterMs, p);
    return p;
  };
  // What the deadline interceptor answers a call that waited past its deadline.
  const pastDeadline = encode(new ConnectError("the call was cancelled or ran past its deadline", Code.DeadlineExceeded));
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

  // Calls admitted here: the tenant, and whether its share is held too.
  const admitted = new WeakMap<Request, { tenantId: string; share: boolean }>();
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
      // A call whose client goes away while it waits in one of the tenant's
      // lines leaves it (and takes no token if it was waiting for one).
      const tenantId = principal.tenantId;
      const gone = new AbortController();
      let waiting = true;
      res.once("close", () => waiting && gone.abort(CLIENT_GONE));
      const admittedHere = (share: boolean) => {
        waiting = false;
        admitted.set(req, { tenantId, share });
        next();
      };
      options.limiter.admit(tenantId, gone.signal).then(
        () => {
          if (!needed.share) return admittedHere(false);
          // Its share, unread: the tenant's calls beyond it wait in its own
          // line, until their deadline at most.
          const turn = options.shares.tryEnter(tenantId)
            ? Promise.resolve()
            : options.shares.enter(tenantId, AbortSignal.any([gone.signal, AbortSignal.timeout(deadlineMsOf(req))]));
          turn.then(
            () => {
              // Gone at the moment its turn came: the turn passes on at once.
              if (gone.signal.aborted) return options.shares.leave(tenantId);
              // Its share ends with its answer: an HTTP/2 stream the client
              // keeps open after the answer (a body it is still sending)
              // must not hold it, and only the stream itself says when its
              // answer is finished (the compatibility response waits for
              // the whole stream to close).
              let held = true;
              const release = () => {
                if (held) options.shares.leave(tenantId);
                held = false;
              };
              const answered = (res as Partial<Http2ServerResponse>).stream ?? res;
              answered.once("finish", release).once("close", release);
              admittedHere(true);
            },
            () => {
              waiting = false;
              if (!gone.signal.aborted) refuse(pastDeadline);
            },
          );
        },
        // Anything but a refusal (the tenant's limits unreadable) is the full path's to report.
        (error: unknown) => {
          waiting = false;
          if (error === CLIENT_GONE) return;
          if (error instanceof RateLimitedError) refuse(rateLimited(error.retryAfterMs));
          else next();
        },
      );
    },
    contextValues(req) {
      const values = createContextValues();
      const call = admitted.get(req);
      if (call) {
        values.set(admittedTenantKey, call.tenantId);
        if (call.share) values.set(shareHeldKey, call.tenantId);
      }
      return values;
    },
  };
}

function send(res: Response, status: number, headers: Record<string, string>, body?: Uint8Array): void {
  (res as ServerResponse).writeHead(status, headers);
  (res as ServerResponse).end(body);
}
