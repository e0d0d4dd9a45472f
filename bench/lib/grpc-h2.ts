import * as http2 from "node:http2";
import type { Fire } from "./load-loop.ts";

/** One gRPC request: the framed body (5-byte prefix + protobuf) and its bearer token ("" for none). */
export interface GrpcCall {
  frame: Buffer;
  token: string;
}

/** Frames a protobuf message for gRPC: flag 0 (not compressed), 4-byte big-endian length, bytes. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/**
 * gRPC over raw node:http2: `connections` sessions, calls spread over them
 * round-robin by slot. Success is grpc-status 0 from the trailers (or from the
 * headers of a trailers-only answer), never the HTTP status alone.
 */
export async function grpcFire(
  url: string,
  path: string,
  connections: number,
  next: (i: number) => GrpcCall,
): Promise<{ fire: Fire; close(): void }> {
  const sessions = await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<http2.ClientHttp2Session>((resolve, reject) => {
          const s = http2.connect(url);
          s.once("connect", () => resolve(s));
          s.once("error", reject);
        }),
    ),
  );
  for (const s of sessions) s.on("error", () => {});
  const headersByToken = new Map<string, http2.OutgoingHttpHeaders>();
  const headersFor = (token: string) => {
    let h = headersByToken.get(token);
    if (!h) {
      h = { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" };
      if (token) h.authorization = `Bearer ${token}`;
      headersByToken.set(token, h);
    }
    return h;
  };
  const fire: Fire = (i, slot, done) => {
    const call = next(i);
    let status: string | undefined;
    let message: string | undefined;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = sessions[slot % sessions.length]!.request(headersFor(call.token));
    } catch (err) {
      done("request-error", String(err));
      return;
    }
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) {
        status = String(h["grpc-status"]);
        message = h["grpc-message"] as string | undefined;
      } else if (h[":status"] !== 200) status = `http-${h[":status"]}`;
    });
    stream.on("trailers", (t) => {
      status = String(t["grpc-status"]);
      message = t["grpc-message"] as string | undefined;
    });
    stream.on("data", () => {});
    stream.on("error", (err) => {
      status ??= "stream-error";
      message ??= err.message;
    });
    stream.on("close", () => done(status ?? "no-grpc-status", message && percentDecoded(message)));
    stream.end(call.frame);
  };
  return { fire, close: () => sessions.forEach((s) => s.close()) };
}

/** grpc-message is percent-encoded; a malformed one is shown as sent. */
function percentDecoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
