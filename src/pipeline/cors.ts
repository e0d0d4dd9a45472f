import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { cors } from "@connectrpc/connect";

// What browsers may send and read for Connect, gRPC-Web and gRPC calls:
// connect's own lists (kept in step with the protocols it serves), plus the
// headers of this service.
const ALLOWED_METHODS = [...cors.allowedMethods, "OPTIONS"].join(", ");
const ALLOWED_HEADERS = [...cors.allowedHeaders, "Authorization", "X-Tenant-Id"].join(", ");
const EXPOSED_HEADERS = cors.exposedHeaders.join(", ");

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/**
 * Adds CORS headers for allowed browser origins and answers preflights.
 * Returns true when the request was fully answered (a preflight).
 */
export function createCors(origins: string[]): (req: Request, res: Response) => boolean {
  const any = origins.includes("*");
  const allowed = new Set(origins);
  return (req, res) => {
    const origin = req.headers.origin;
    if (typeof origin !== "string" || !(any || allowed.has(origin))) {
      return false;
    }
    res.setHeader("Access-Control-Allow-Origin", any ? "*" : origin);
    res.setHeader("Vary", "Origin");
    res.setHeader("Access-Control-Expose-Headers", EXPOSED_HEADERS);
    if (req.method !== "OPTIONS") {
      return false;
    }
    res.setHeader("Access-Control-Allow-Methods", ALLOWED_METHODS);
    res.setHeader("Access-Control-Allow-Headers", ALLOWED_HEADERS);
    res.setHeader("Access-Control-Max-Age", "7200");
    res.statusCode = 204;
    res.end();
    return true;
  };
}
