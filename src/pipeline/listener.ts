import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";

/** A request handler usable by both HTTP/1.1 and HTTP/2 servers. */
export type Handler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** One listening port serving HTTP/1.1 and HTTP/2, with or without TLS. */
export interface Listener {
  /** Starts listening; resolves with the bound port. */
  listen(port: number, host: string): Promise<number>;
  /**
   * Stops accepting connections and asks open ones to finish (GOAWAY on
   * HTTP/2, close-after-response on HTTP/1.1). Resolves when every connection
   * has closed, or after `graceMs`, when the rest are destroyed.
   */
  close(graceMs: number): Promise<void>;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
// A connection that says nothing for this long before its first request is dropped.
const FIRST_BYTES_TIMEOUT_MS = 10_000;
// An HTTP/1.1 connection idle this long is dropped. (The inner server never
// listens, so Node's headersTimeout/requestTimeout checks do not run; the
// socket idle timeout is what bounds a slow client.)
const HTTP1_IDLE_TIMEOUT_MS = 120_000;

/**
 * Without TLS, Node's HTTP/2 server ignores allowHTTP1, so a plain TCP server
 * reads the first bytes of each connection: the HTTP/2 client preface goes to
 * the HTTP/2 server (gRPC, h2c), anything else to the HTTP/1.1 server
 * (Connect, gRPC-Web from browsers). With TLS, ALPN makes the same choice.
 * With `h2c`, the cleartext HTTP/2 connections go there instead (the gRPC
 * path, which passes streams that are not gRPC back to `handler`).
 */
export function createListener(
  handler: Handler,
  tls?: { certFile: string; keyFile: string },
  /** Takes the h2c connections instead of Node's HTTP/2 server (the gRPC path); it sends their GOAWAY itself. */
  h2c?: (socket: net.Socket) => void,
): Listener {
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  // HTTP/1.1 requests in progress per connection, to tell idle keep-alive
  // connections from busy ones at shutdown. (The inner HTTP/1.1 server never
  // listens itself, so Node does not track its connections for us.)
  const busy = new WeakMap<net.Socket, number>();
  // Connections speaking HTTP/2; they are closed by their session's GOAWAY.
  const http2Sockets = new WeakSet<net.Socket>();
  let closing = false;

  const countHttp1 = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (req.httpVersionMajor !== 1) return;
    const socket = req.socket as net.Socket;
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    if (closing) res.setHeader("Connection", "close");
    closeIfBodyUnread(req as http.IncomingMessage, res as http.ServerResponse);
    res.once("close", () => {
      const left = (busy.get(socket) ?? 1) - 1;
      busy.set(socket, left);
      if (closing && left === 0) socket.destroySoon();
    });
  };
  const serve: Handler = (req, res) => {
    countHttp1(req, res);
    handler(req, res);
  };

  let front: net.Server;
  if (tls) {
    const secure = http2.createSecureServer(
      { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), allowHTTP1: true },
      serve,
    );
    secure.on("session", (s) => track(sessions, s));
    front = secure;
  } else {
    const h1 = http.createServer(serve);
    h1.timeout = HTTP1_IDLE_TIMEOUT_MS;
    const h2 = http2.createServer({}, serve);
    h2.on("session", (s) => track(sessions, s));
    front = net.createServer((socket) =>
      sniff(socket, (isH2) => {
        if (isH2) http2Sockets.add(socket);
        if (isH2 && h2c) h2c(socket);
        else (isH2 ? h2 : h1).emit("connection", socket);
      }),
    );
  }
  front.on(tls ? "secureConnection" : "connection", (socket: net.Socket & { alpnProtocol?: string | false }) => {
    if (socket.alpnProtocol === "h2") http2Sockets.add(socket);
    track(sockets, socket);
  });

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        front.once("error", reject);
        front.listen(port, host, () => {
          front.off("error", reject);
          resolve((front.address() as net.AddressInfo).port);
        });
      });
    },
    close(graceMs) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, graceMs);
        front.close(() => {
          clearTimeout(timer);
          resolve();
        });
        closing = true;
        for (const s of sessions) s.close();
        // Idle HTTP/1.1 connections close now; busy ones after their response.
        for (const socket of sockets) {
          if (!http2Sockets.has(socket) && (busy.get(socket) ?? 0) === 0) socket.destroySoon();
        }
      });
    },
  };
}

/**
 * An HTTP/1.1 answer sent before the request body was read to its end (a
 * body refused as too large) says `Connection: close`, and the connection
 * closes after it: the unread rest of the body would otherwise sit in front
 * of the client's next request on the connection, which would stall until
 * the connection timed out.
 */
function closeIfBodyUnread(req: http.IncomingMessage, res: http.ServerResponse): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: http.ServerResponse, ...args: Parameters<typeof writeHead>) {
    if (!req.complete && !res.headersSent) res.setHeader("Connection", "close");
    return writeHead.apply(this, args);
  } as typeof writeHead;
}

function track<T extends net.Socket | http2.Http2Session>(set: Set<T>, item: T): void {
  set.add(item);
  item.once("close", () => set.delete(item));
}

// Reads until the first bytes decide the protocol, then hands the socket on
// with those bytes put back.
function sniff(socket: net.Socket, route: (isH2: boolean) => void): void {
  let seen = Buffer.alloc(0);
  socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isPrefix && seen.length < H2_PREFACE.length) return;
    socket.off("data", onData);
    socket.setTimeout(0);
    socket.pause();
    socket.unshift(seen);
    route(isPrefix);
    // The HTTP/2 session drains the buffered bytes itself and then reads the
    // socket natively; only the HTTP/1.1 parser needs the stream flowing.
    if (!isPrefix) socket.resume();
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}
