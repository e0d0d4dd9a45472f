import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { InvalidArgumentError } from "./errors.ts";

/** Page size when the client sends 0. */
export const DEFAULT_PAGE_SIZE = 50;
/** Largest page; bigger requests are clamped (AIP-158). */
export const MAX_PAGE_SIZE = 200;

/** The effective page size of a request. */
export function pageSizeOf(requested: number): number {
  if (requested < 0) {
    throw new InvalidArgumentError([{ field: "page_size", description: "must not be negative" }]);
  }
  return requested === 0 ? DEFAULT_PAGE_SIZE : Math.min(requested, MAX_PAGE_SIZE);
}

/** A position in a keyset ordering: the sort key values of the last row served. */
export type Cursor = (string | number)[];

/**
 * Opaque, tamper-proof page tokens. A token carries the keyset cursor and a
 * digest of the query it continues; its MAC also covers the tenant, so a
 * token used by another tenant, with other filters, or edited by hand is
 * INVALID_ARGUMENT rather than a silent jump.
 */
export interface PageTokens {
  /** A token for the page after `cursor` of the query `query`. */
  encode(tenantId: string, query: unknown, cursor: Cursor): string;
  /** The cursor in `token`, or undefined for the first page. */
  decode(tenantId: string, query: unknown, token: string): Cursor | undefined;
  /**
   * Splits the `limit + 1` rows a list read into the page to return and the
   * token of the next one (empty on the last page).
   */
  nextPage<T>(
    tenantId: string,
    query: unknown,
    rows: T[],
    limit: number,
    cursorOf: (last: T) => Cursor,
  ): { page: T[]; nextPageToken: string };
}

/** Page tokens signed with `secret`. */
export function createPageTokens(secret: Uint8Array): PageTokens {
  const mac = (tenantId: string, body: string) =>
    createHmac("sha256", secret).update(tenantId).update("\n").update(body).digest();
  const digest = (query: unknown) => createHash("sha256").update(JSON.stringify(query)).digest("base64url").slice(0, 16);
  const tokens: PageTokens = {
    nextPage(tenantId, query, rows, limit, cursorOf) {
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      const more = rows.length > limit && last !== undefined;
      return { page, nextPageToken: more ? tokens.encode(tenantId, query, cursorOf(last)) : "" };
    },
    encode(tenantId, query, cursor) {
      const body = Buffer.from(JSON.stringify({ q: digest(query), c: cursor })).toString("base64url");
      return `${body}.${mac(tenantId, body).toString("base64url")}`;
    },
    decode(tenantId, query, token) {
      if (token === "") return undefined;
      const [body, sig, extra] = token.split(".");
      const expected = body ? mac(tenantId, body) : undefined;
      const given = sig ? Buffer.from(sig, "base64url") : undefined;
      if (extra !== undefined || !expected || !given || given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw invalid("is not a page token issued for this request");
      }
      const parsed = JSON.parse(Buffer.from(body!, "base64url").toString()) as { q?: unknown; c?: unknown };
      if (parsed.q !== digest(query)) {
        throw invalid("was issued for a request with other filters or ordering");
      }
      if (!Array.isArray(parsed.c) || !parsed.c.every((v) => typeof v === "string" || typeof v === "number")) {
        throw invalid("is malformed");
      }
      return parsed.c;
    },
  };
  return tokens;
}

function invalid(why: string): InvalidArgumentError {
  return new InvalidArgumentError([{ field: "page_token", description: why }], "INVALID_PAGE_TOKEN");
}
