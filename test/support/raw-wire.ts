import * as http from "node:http";
import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { endStreamFromJson, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";

/*
 * Raw RPC calls for hostile-input tests: the body is whatever bytes the test
 * says (a client library would refuse to send most of them), and the answer
 * is reduced to the status the server sent.
 */

/** What the server answered. */
export interface RawAnswer {
  /** HTTP status. */
  http: number;
  /**
   * The RPC status as a Connect code name ("ok", "invalid_argument"…), or
   * undefined when the server answered at the HTTP level only (e.g. 415).
   */
  code: string | undefined;
  /** The error message, if any. */
  message: string;
  /** The error as a client reads it, with its details (`findDetails`), when the answer is an RPC error. */
  error?: ConnectError;
}

const GRPC_CODES = [
  "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
  "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
];

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

/** Closes the pooled HTTP/1.1 connections. */
export function closeRawAgents(): void {
  agent.destroy();
}

/** The 5-byte envelope of the Connect streaming and gRPC protocols around `data`. */
export function envelope(data: Uint8Array, flags = 0, declaredLength = data.length): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, declaredLength >>> 0);
  out.set(data, 5);
  return out;
}

/**
 * A Connect-protocol call over HTTP/1.1: unary when `stream` is false (the
 * body is the message), else a streaming call (the body should be enveloped).
 */
export function connectCall(
  baseUrl: string,
  procedure: string,
  body: Uint8Array | string,
  options: { contentType: string; headers?: Record<string, string>; timeoutMs?: number },
): Promise<RawAnswer> {
  const url = new URL(procedure, baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: "POST",
        agent,
        headers: {
          "content-type": options.contentType,
          "connect-protocol-version": "1",
          "connect-timeout-ms": String(options.timeoutMs ?? 10_000),
          ...options.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => resolve(readAnswer(res.statusCode ?? 0, res.headers, Buffer.concat(chunks))));
      },
    );
    // The server may answer (and close) before reading a body it refuses.
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNRESET" || err.code === "EPIPE") resolve({ http: 0, code: undefined, message: err.code });
      else reject(err);
    });
    req.end(typeof body === "string" ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });
}

/** A Connect GET call (a NO_SIDE_EFFECTS method): the JSON message in the query string. */
export function connectGet(baseUrl: string, procedure: string, json: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  const url = new URL(procedure, baseUrl);
  url.search = new URLSearchParams({ connect: "v1", encoding: "json", message: json }).toString();
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => resolve(readAnswer(res.statusCode ?? 0, res.headers, Buffer.concat(chunks))));
      })
      .on("error", reject);
  });
}

/** The enveloped messages of a streaming or gRPC-Web body. */
function* envelopes(body: Buffer): Generator<{ flags: number; data: Buffer }> {
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    yield { flags: body[at]!, data: body.subarray(at + 5, at + 5 + length) };
    at += 5 + length;
  }
}

function readAnswer(status: number, headers: http.IncomingHttpHeaders, body: Buffer): RawAnswer {
  const contentType = String(headers["content-type"] ?? "");
  if (contentType.startsWith("application/grpc-web")) {
    // The status is in the headers (trailers-only) or in the trailer frame (flag 0x80).
    if (headers["grpc-status"] !== undefined) return grpcAnswer(status, headers);
    for (const { flags, data } of envelopes(body)) {
      if (flags & 0x80) {
        const trailer = Object.fromEntries(
          data
            .toString("utf8")
            .split("\r\n")
            .filter(Boolean)
            .map((line) => [line.slice(0, line.indexOf(":")).trim().toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]),
        );
        return grpcAnswer(status, trailer);
      }
    }
    return { http: status, code: undefined, message: "gRPC-Web answer without a status" };
  }
  if (contentType.startsWith("application/connect+")) {
    // Streaming: envelopes; the end-stream one (flag 2) carries the error, if any.
    for (const { flags, data } of envelopes(body)) {
      if (flags & 2) {
        const end = JSON.parse(data.toString("utf8") || "{}") as { error?: { code?: string; message?: string } };
        const error = end.error ? endStreamFromJson(data).error : undefined;
        return { http: status, code: end.error?.code ?? "ok", message: end.error?.message ?? "", error };
      }
    }
    return { http: status, code: undefined, message: "stream without end message" };
  }
  if (status === 200) return { http: status, code: "ok", message: "" };
  if (contentType.startsWith("application/json")) {
    try {
      const error = JSON.parse(body.toString("utf8")) as { code?: string; message?: string };
      return { http: status, code: error.code, message: error.message ?? "", error: connectErrorOf(body) };
    } catch {
      return { http: status, code: undefined, message: body.toString("utf8").slice(0, 200) };
    }
  }
  return { http: status, code: undefined, message: body.toString("utf8").slice(0, 200) };
}

/** A Connect unary error body as a client reads it; undefined when it is not one. */
function connectErrorOf(body: Buffer): ConnectError | undefined {
  try {
    return errorFromJsonBytes(body, undefined, new ConnectError("not a Connect error", Code.Unknown));
  } catch {
    return undefined;
  }
}

/** One HTTP/2 connection for gRPC calls. */
export interface GrpcSession {
  /** A gRPC call with an already enveloped body; the status from the trailers (or trailers-only headers). */
  call(procedure: string, body: Uint8Array, headers?: Record<string, string>, contentType?: string): Promise<RawAnswer>;
  close(): void;
}

/** Opens an HTTP/2 (h2c) connection to `baseUrl` for raw gRPC calls. */
export function grpcSession(baseUrl: string): GrpcSession {
  const session = http2.connect(baseUrl);
  session.on("error", () => {});
  return {
    call(procedure, body, headers = {}, contentType = "application/grpc+proto") {
      return new Promise((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": procedure,
          "content-type": contentType,
          te: "trailers",
          "grpc-timeout": "10S",
          ...headers,
        });
        let status = 0;
        let fromHeaders: RawAnswer | undefined;
        stream.on("response", (h) => {
          status = Number(h[":status"]);
          if (h["grpc-status"] !== undefined) fromHeaders = grpcAnswer(status, h);
        });
        stream.on("trailers", (t) => resolve(grpcAnswer(status, t)));
        stream.on("data", () => {});
        stream.on("end", () => resolve(fromHeaders ?? { http: status, code: undefined, message: "no grpc-status" }));
        stream.on("error", (err) => (fromHeaders ? resolve(fromHeaders) : reject(err)));
        stream.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
      });
    },
    // Destroyed, not closed: a test may leave a stream open on purpose.
    close: () => session.destroy(),
  };
}

function grpcAnswer(status: number, headers: http2.IncomingHttpHeaders | Record<string, string>): RawAnswer {
  const code = Number(headers["grpc-status"]);
  const status_ = new Headers();
  for (const name of ["grpc-status", "grpc-message", "grpc-status-details-bin"]) {
    const value = headers[name];
    if (value !== undefined) status_.set(name, String(value));
  }
  return {
    http: status,
    code: Number.isInteger(code) ? (GRPC_CODES[code] ?? `code ${code}`) : undefined,
    message: decodeURIComponent(String(headers["grpc-message"] ?? "")),
    error: findTrailerError(status_),
  };
}
