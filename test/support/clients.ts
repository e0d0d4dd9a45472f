import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

/** Adds the bearer token (and an optional tenant pick) to every call. */
export function bearer(token: string, tenant?: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    if (tenant) req.header.set("x-tenant-id", tenant);
    return next(req);
  };
}

/** Connect protocol, JSON, over HTTP/1.1: what a browser or curl sends. */
export function connectJson(baseUrl: string, token?: string, tenant?: string): Transport {
  return createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    useBinaryFormat: false,
    interceptors: token ? [bearer(token, tenant)] : [],
  });
}

/** gRPC over HTTP/2 cleartext: what backend services send. */
export function grpc(baseUrl: string, token?: string): Transport {
  return createGrpcTransport({ baseUrl, interceptors: token ? [bearer(token)] : [] });
}

/** gRPC-Web through the browser client library (fetch, HTTP/1.1). */
export function grpcWeb(baseUrl: string, token?: string): Transport {
  return createGrpcWebTransport({ baseUrl, interceptors: token ? [bearer(token)] : [] });
}

/** A typed client of `service` over `transport`. */
export function clientOf<S extends DescService>(service: S, transport: Transport): Client<S> {
  return createClient(service, transport);
}

/** The ConnectError a call failed with; fails the test if it succeeded. */
export async function errorOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

export { Code };
