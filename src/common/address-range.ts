import { BlockList, isIPv4, isIPv6 } from "node:net";

/*
 * Which addresses a tenant-configured outbound call may not reach: anything
 * that is not a public unicast address. A tenant who could reach the
 * platform's own network (cloud metadata at 169.254.169.254, the database on
 * 127.0.0.1:5432, internal services on 10.x) could read their answers back
 * as an execution's output or error detail.
 */

// [what the tenant is told, the ranges]; the first match names the range.
const IPV4: [string, string[]][] = [
  ["unspecified", ["0.0.0.0/8"]],
  ["loopback", ["127.0.0.0/8"]],
  ["private", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]],
  ["shared (carrier-grade NAT)", ["100.64.0.0/10"]],
  ["link-local", ["169.254.0.0/16"]],
  // Protocol assignments, documentation and benchmarking: never a real endpoint.
  ["reserved", ["192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4"]],
  ["multicast", ["224.0.0.0/4"]],
];

const IPV6: [string, string[]][] = [
  ["unspecified", ["::/128"]],
  ["loopback", ["::1/128"]],
  ["unique-local", ["fc00::/7"]],
  ["link-local", ["fe80::/10"]],
  // Deprecated site-local, discard-only and documentation prefixes.
  ["reserved", ["fec0::/10", "100::/64", "2001:db8::/32"]],
  ["multicast", ["ff00::/8"]],
];

function lists(family: "ipv4" | "ipv6", table: [string, string[]][]): [string, BlockList][] {
  return table.map(([name, cidrs]) => {
    const list = new BlockList();
    for (const cidr of cidrs) {
      const [network, prefix] = cidr.split("/");
      list.addSubnet(network!, Number(prefix), family);
    }
    return [name, list];
  });
}

const ipv4Lists = lists("ipv4", IPV4);
const ipv6Lists = lists("ipv6", IPV6);

/**
 * The kind of non-public range `address` (an IP literal, as a resolver
 * returns it) lies in, e.g. "loopback"; undefined for a public address.
 * IPv6 forms that carry an IPv4 address (mapped ::ffff:a.b.c.d, compatible
 * ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that IPv4
 * address. Anything that is not an IP address is refused as "invalid".
 */
export function refusedRange(address: string): string | undefined {
  const bare = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (isIPv4(bare)) return ipv4Lists.find(([, list]) => list.check(bare, "ipv4"))?.[0];
  if (!isIPv6(bare)) return "invalid";
  const embedded = embeddedIPv4(bare);
  if (embedded !== undefined) return refusedRange(embedded);
  return ipv6Lists.find(([, list]) => list.check(bare, "ipv6"))?.[0];
}

// The IPv4 address an IPv6 address carries, for the prefixes that carry one.
function embeddedIPv4(address: string): string | undefined {
  const words = ipv6Words(address);
  const zero = (from: number, to: number) => words.slice(from, to).every((w) => w === 0);
  const quad = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible; :: and ::1 themselves excluded).
  if (zero(0, 5) && (words[5] === 0xffff || (words[5] === 0 && !(words[6] === 0 && words[7]! <= 1)))) {
    return quad(words[6]!, words[7]!);
  }
  // 64:ff9b::a.b.c.d (NAT64, RFC 6052 well-known prefix).
  if (words[0] === 0x64 && words[1] === 0xff9b && zero(2, 6)) return quad(words[6]!, words[7]!);
  // 2002:AABB:CCDD::/48 (6to4) routes to a.b.c.d.
  if (words[0] === 0x2002) return quad(words[1]!, words[2]!);
  return undefined;
}

// The eight 16-bit words of a valid IPv6 address (a trailing dotted quad included).
function ipv6Words(address: string): number[] {
  let text = address.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const parse = (part: string | undefined) => (part ? part.split(":").map((w) => parseInt(w, 16)) : []);
  const front = parse(head);
  const back = parse(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}
