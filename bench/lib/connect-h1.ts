import * as http from "node:http";
import type { Fire } from "./load-loop.ts";

/** One Connect JSON request over HTTP/1.1: the body and its bearer token. */
export interface ConnectJsonCall {
  body: Buffer;
  token: string;
}

/**
 * Connect unary JSON over HTTP/1.1 with a keep-alive agent of `connections`
 * sockets. Connect answers a unary error with a non-200 status, so 200 is success.
 */
export function connectJsonFire(url: string, path: string, connections: number, next: (i: number) => ConnectJsonCall) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const { hostname, port } = new URL(url);
  const fire: Fire = (i, _slot, done) => {
    const call = next(i);
    const req = http.request(
      {
        agent,
        hostname,
        port,
        method: "POST",
        path,
        headers: {
          "content-type": "application/json",
          "content-length": call.body.length,
          "connect-protocol-version": "1",
          authorization: `Bearer ${call.token}`,
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          if (res.statusCode !== 200 && text.length < 500) text += c;
        });
        res.on("end", () => (res.statusCode === 200 ? done("0") : done(`http-${res.statusCode}`, text)));
        res.on("error", (err) => done("response-error", err.message));
      },
    );
    req.on("error", (err) => done("request-error", err.message));
    req.end(call.body);
  };
  return { fire, close: () => agent.destroy() };
}
