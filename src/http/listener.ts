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

/**
 * Without TLS, Node's HTTP/2 server ignores allowHTTP1, so a plain TCP server
 * reads the first bytes of each connection: the HTTP/2 client preface goes to
 * the HTTP/2 server (gRPC, h2c), anything else to the HTTP/1.1 server
 * (Connect, gRPC-Web from browsers). With TLS, ALPN makes the same choice.
 */
export function createListener(handler: Handler, tls?: { certFile: string; keyFile: string }): Listener {
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  let h1: http.Server | undefined;
  let front: net.Server;

  if (tls) {
    const secure = http2.createSecureServer(
      { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), allowHTTP1: true },
      handler,
    );
    front = secure;
    secure.on("session", (s) => track(sessions, s));
  } else {
    const h1Server = http.createServer(handler);
    const h2 = http2.createServer({}, handler);
    h1 = h1Server;
    h2.on("session", (s) => track(sessions, s));
    front = net.createServer((socket) => sniff(socket, (isH2) => (isH2 ? h2 : h1Server).emit("connection", socket)));
  }
  front.on("connection", (socket: net.Socket) => track(sockets, socket));

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
        for (const s of sessions) s.close();
        h1?.closeIdleConnections();
        if (!tls) {
          // Busy keep-alive connections: close each after its current response.
          h1?.on("request", (_req, res) => res.setHeader("Connection", "close"));
        }
      });
    },
  };
}

function track<T extends net.Socket | http2.Http2Session>(set: Set<T>, item: T): void {
  set.add(item);
  item.once("close", () => set.delete(item));
}

// Reads until the first bytes decide the protocol, then hands the socket on
// with those bytes put back.
function sniff(socket: net.Socket, route: (isH2: boolean) => void): void {
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isPrefix && seen.length < H2_PREFACE.length) return;
    socket.off("data", onData);
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
