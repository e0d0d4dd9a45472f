import * as http from "node:http";
import type { AddressInfo } from "node:net";

/*
 * The upstreams executions call (webhooks, OpenAI-compatible endpoints), as
 * a real HTTP server the test scripts path by path.
 */

/** One request an upstream fake received. */
export interface Received {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: Record<string, unknown> | undefined;
  /** Settles when the connection closed before the answer was complete (the caller gave up). */
  aborted: Promise<void>;
  wasAborted: boolean;
}

export type Route = (req: Received, res: http.ServerResponse) => void | Promise<void>;

/** A real HTTP server on 127.0.0.1:0 that records requests and answers by path. */
export interface Upstream {
  url: string;
  port: number;
  requests: Received[];
  route(path: string, handler: Route): void;
  close(): Promise<void>;
}

export async function upstream(): Promise<Upstream> {
  const routes = new Map<string, Route>();
  const requests: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(body) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      let markAborted!: () => void;
      const rec: Received = {
        method: req.method ?? "",
        path: (req.url ?? "").split("?")[0]!,
        headers: req.headers,
        body,
        json,
        aborted: new Promise<void>((resolve) => (markAborted = resolve)),
        wasAborted: false,
      };
      requests.push(rec);
      // The response closing before it finished means the caller hung up.
      res.on("close", () => {
        if (!res.writableFinished) {
          rec.wasAborted = true;
          markAborted();
        }
      });
      const handler = routes.get(rec.path);
      if (!handler) {
        res.writeHead(404, { "content-type": "text/plain" }).end("no route");
        return;
      }
      Promise.resolve(handler(rec, res)).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(String(err));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    route: (path, handler) => void routes.set(path, handler),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
