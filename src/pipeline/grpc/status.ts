import type { ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { Metadata, type StatusObject } from "@grpc/grpc-js";

/**
 * A ConnectError as grpc-js sends it: the status code, the raw message
 * (grpc-js percent-encodes it into grpc-message) and as trailers whatever
 * connect-node would send besides: the error's own metadata and the
 * google.rpc.Status with the error's details in grpc-status-details-bin,
 * built by connect's own setTrailerStatus, so both paths send the same bytes.
 */
export function grpcStatusOf(error: ConnectError): StatusObject {
  const metadata = new Metadata();
  for (const [name, value] of setTrailerStatus(new Headers(), error)) {
    if (name === "grpc-status" || name === "grpc-message") continue;
    if (name.endsWith("-bin")) {
      for (const part of value.split(",")) metadata.add(name, Buffer.from(part.trim(), "base64"));
    } else {
      metadata.add(name, value);
    }
  }
  return { code: error.code as number, details: error.rawMessage, metadata };
}

/** Response headers or trailers a handler set, as grpc-js metadata; undefined when there are none. */
export function metadataOf(headers: Headers): Metadata | undefined {
  let metadata: Metadata | undefined;
  for (const [name, value] of headers) {
    metadata ??= new Metadata();
    if (name.endsWith("-bin")) metadata.add(name, Buffer.from(value, "base64"));
    else metadata.add(name, value);
  }
  return metadata;
}
