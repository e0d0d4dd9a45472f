import { Code, type ConnectError } from "@connectrpc/connect";

/**
 * Everything a client can observe of a failed call, with `id` replaced by a
 * placeholder: code, message, each detail's type and raw bytes (a UUID has
 * the same length everywhere, so the bytes stay comparable), and the
 * response headers and trailers except the date. Tenant isolation tests
 * compare another tenant's id with an id that never existed through it:
 * the two must answer exactly alike.
 */
export function observable(err: ConnectError, id: string) {
  const hide = (text: string) => text.replaceAll(id, "<id>");
  return {
    code: Code[err.code],
    message: hide(err.rawMessage),
    details: err.details.map((d) => {
      const { type, value } = d as { type: string; value: Uint8Array };
      return { type, bytes: hide(Buffer.from(value).toString("latin1")) };
    }),
    metadata: [...err.metadata.entries()].filter(([name]) => name !== "date").map(([n, v]) => [n, hide(v)]),
  };
}
