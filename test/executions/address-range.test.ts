import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusedRange } from "../../src/common/address-range.ts";
import { createOutbound, OutboundAddressRefused } from "../../src/common/outbound.ts";
import { loadConfig } from "../../src/config.ts";
import { upstream, type Upstream } from "../support/upstream.ts";

/*
 * The outbound address rule in itself. Public addresses cannot be reached
 * from here, so the classifier is tested on its own for them, and the
 * client's lookup path through a replaced classifier against a loopback
 * upstream (the connection uses the address the classifier passed).
 */

describe("refusedRange", () => {
  it.each([
    ["8.8.8.8"],
    ["1.1.1.1"],
    ["93.184.216.34"],
    ["172.32.0.1"],
    ["100.128.0.1"],
    ["2606:4700:4700::1111"],
    ["2a00:1450:4001:80b::200e"],
    ["::ffff:8.8.8.8"],
    ["64:ff9b::808:808"],
    ["2002:808:808::1"],
  ])("lets the public address %s through", (address) => {
    expect(refusedRange(address)).toBeUndefined();
  });

  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "shared (carrier-grade NAT)"],
    ["100.127.255.254", "shared (carrier-grade NAT)"],
    ["169.254.169.254", "link-local"],
    ["0.0.0.0", "unspecified"],
    ["255.255.255.255", "reserved"],
    ["224.0.0.1", "multicast"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["fd00::1", "unique-local"],
    ["fc00::1", "unique-local"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::FFFF:A9FE:A9FE", "link-local"],
    ["::ffff:10.0.0.1", "private"],
    ["::127.0.0.1", "loopback"],
    ["64:ff9b::a9fe:a9fe", "link-local"],
    ["2002:7f00:1::", "loopback"],
    ["2002:c0a8:101::1", "private"],
    ["localhost", "invalid"],
  ])("refuses %s as %s", (address, range) => {
    expect(refusedRange(address)).toBe(range);
  });
});

describe("OUTBOUND_ALLOW_PRIVATE", () => {
  it("is off unless set to true, and a typo fails the start", () => {
    expect(loadConfig({}).outboundAllowPrivate).toBe(false);
    expect(loadConfig({ OUTBOUND_ALLOW_PRIVATE: "true" }).outboundAllowPrivate).toBe(true);
    expect(() => loadConfig({ OUTBOUND_ALLOW_PRIVATE: "yes" })).toThrow(/OUTBOUND_ALLOW_PRIVATE/);
  });
});

describe("the outbound client", () => {
  let fake: Upstream;
  beforeAll(async () => {
    fake = await upstream();
    fake.route("/ok", (_rec, res) => void res.writeHead(200, { "content-type": "text/plain" }).end("reached"));
    fake.route("/moved", (_rec, res) => void res.writeHead(302, { location: `${fake.url}/ok` }).end());
  });
  afterAll(() => fake?.close());

  it("connects to a name whose every address the classifier passes", async () => {
    const checked: string[] = [];
    const outbound = createOutbound({ allowPrivate: false, refusedRange: (a) => void checked.push(a) });
    try {
      const res = await outbound.fetch(`http://localhost:${fake.port}/ok`, { signal: AbortSignal.timeout(5_000) });
      expect(await res.text()).toBe("reached");
      expect(checked).toContain("127.0.0.1");
    } finally {
      await outbound.close();
    }
  });

  it("refuses a name when any address it resolves to is refused, before connecting", async () => {
    const before = fake.requests.length;
    const outbound = createOutbound({ allowPrivate: false, refusedRange: (a) => (a === "127.0.0.1" ? "test" : undefined) });
    try {
      const err = await outbound.fetch(`http://localhost:${fake.port}/ok`, { signal: AbortSignal.timeout(5_000) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OutboundAddressRefused);
      expect((err as OutboundAddressRefused).message).toContain('"localhost"');
      expect((err as OutboundAddressRefused).range).toBe("test");
      expect(fake.requests.length).toBe(before);
    } finally {
      await outbound.close();
    }
  });

  it("hands a redirect back instead of following it", async () => {
    const before = fake.requests.length;
    const outbound = createOutbound({ allowPrivate: true });
    try {
      const res = await outbound.fetch(`${fake.url}/moved`, { signal: AbortSignal.timeout(5_000) });
      expect(res.status).toBe(302);
      expect(fake.requests.slice(before).map((r) => r.path)).toEqual(["/moved"]);
    } finally {
      await outbound.close();
    }
  });
});
