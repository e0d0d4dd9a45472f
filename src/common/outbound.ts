import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { isIP, type LookupFunction } from "node:net";
import { Agent, fetch, type RequestInit, type Response } from "undici";
import { refusedRange } from "./address-range.ts";

/*
 * Every outbound HTTP call whose URL a tenant chose (agent endpoints today,
 * HTTP and MCP tools next) goes through here, so a tenant cannot make the
 * platform call into its own network. The host is resolved once per
 * connection, every address it resolves to is checked, and the connection
 * is made to the checked address (the check sits in the connection's own
 * lookup), so a DNS answer that changes between check and connect (DNS
 * rebinding) cannot slip in. IP literals are checked before anything is
 * sent. Redirects are never followed: a 3xx comes back as it is.
 */

/** A call refused because its host is, or resolves to, a non-public address. */
export class OutboundAddressRefused extends Error {
  /** The host as the tenant wrote it. */
  readonly host: string;
  /** The kind of range, e.g. "loopback", "private", "link-local". */
  readonly range: string;

  constructor(host: string, range: string) {
    super(`the host "${host}" is or resolves to a ${range} address, which outbound calls may not reach`);
    this.name = "OutboundAddressRefused";
    this.host = host;
    this.range = range;
  }
}

/** How outbound calls are checked. */
export interface OutboundOptions {
  /** Reach private, loopback and link-local addresses too (OUTBOUND_ALLOW_PRIVATE; development). */
  allowPrivate: boolean;
  /** Which range an address is refused for (undefined: allowed); tests replace it. Default refusedRange. */
  refusedRange?: (address: string) => string | undefined;
}

/** Outbound HTTP for tenant-chosen URLs. */
export interface Outbound {
  /** fetch, with the address rule applied and redirects not followed; rejects with OutboundAddressRefused. */
  fetch(url: string, init: Omit<RequestInit, "dispatcher" | "redirect">): Promise<Response>;
  /** Closes the pooled connections. */
  close(): Promise<void>;
}

/** Creates the outbound client; one per server. */
export function createOutbound(options: OutboundOptions): Outbound {
  const range = options.allowPrivate ? () => undefined : (options.refusedRange ?? refusedRange);
  const agent = new Agent({ connect: { lookup: checkedLookup(range) } });
  return {
    async fetch(url, init) {
      const host = new URL(url).hostname;
      // A literal address is connected to without a lookup: check it here.
      const literal = host.replace(/^\[|\]$/g, "");
      if (isIP(literal)) {
        const refused = range(literal);
        if (refused) throw new OutboundAddressRefused(host, refused);
      }
      try {
        return await fetch(url, { ...init, redirect: "manual", dispatcher: agent });
      } catch (err) {
        // fetch wraps connection failures, the lookup's refusal among them, as TypeError("fetch failed").
        const cause = (err as Error).cause;
        if (cause instanceof OutboundAddressRefused) throw cause;
        throw err;
      }
    },
    close: () => agent.close(),
  };
}

/** A dns.lookup that fails when any address the host resolves to is refused. */
function checkedLookup(range: (address: string) => string | undefined): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    dnsLookup(hostname, { ...lookupOptions, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, "", 0);
      if (addresses.length === 0) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), "", 0);
      // All of them: with several, the connection may try any (autoSelectFamily).
      for (const { address } of addresses) {
        const refused = range(address);
        if (refused) return callback(new OutboundAddressRefused(hostname, refused), "", 0);
      }
      if (lookupOptions.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      const first = addresses[0]!;
      callback(null, first.address, first.family);
    });
  };
}
