import { ConnectionException } from "@mikro-orm/core";

// SQLSTATEs that mean the connection or the server is gone or refuses work
// for now: connection exceptions (class 08), admin and crash shutdown,
// "cannot connect now", a dropped database (57P01-57P04), too many
// connections (53300), and a session killed for idling in a transaction.
const STATES = new Set(["57P01", "57P02", "57P03", "57P04", "53300", "25P03"]);
// Socket errors of a connection that could not be opened or was cut.
const SOCKET_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
// What the pg driver and its pool say, without a code, when a connection
// died, could not be opened in time, or no pooled connection freed up in
// time (DB_ACQUIRE_TIMEOUT_MS).
const MESSAGES =
  /connection terminated|connection timeout|timeout exceeded when trying to connect|encountered a connection error|is not queryable|cannot use a pool after calling end/i;

/**
 * Whether `err` says the database cannot be reached right now (as opposed
 * to refusing the query): looks through wrappers, as MikroORM's
 * DriverException copies the driver error's fields and others set `cause`.
 */
export function isConnectionFailure(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof ConnectionException) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (code.startsWith("08") || STATES.has(code) || SOCKET_ERRORS.has(code))) return true;
    if (MESSAGES.test(e.message)) return true;
  }
  return false;
}
