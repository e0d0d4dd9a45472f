import { describe, expect, it } from "vitest";
import { TenantLines } from "../../src/pipeline/admission/lines.ts";

// TenantLines in memory: each tenant's share, work-conserving up to the capacity.
describe("TenantLines (share 2, capacity 4)", () => {
  it("lets a tenant alone use the whole capacity, and no more", () => {
    const lines = new TenantLines(2, 4);
    expect([1, 2, 3, 4, 5].map(() => lines.tryEnter("a"))).toEqual([true, true, true, true, false]);
  });

  it("gives another tenant its share at once, even while the first borrows everything", () => {
    const lines = new TenantLines(2, 4);
    for (let i = 0; i < 4; i++) lines.tryEnter("a");
    expect([lines.tryEnter("b"), lines.tryEnter("b"), lines.tryEnter("b")]).toEqual([true, true, false]);
  });

  it("lends to a tenant alone only: once another calls, each keeps to its share", async () => {
    const lines = new TenantLines(2, 6);
    expect([lines.tryEnter("a"), lines.tryEnter("a"), lines.tryEnter("a")]).toEqual([true, true, true]);
    expect(lines.tryEnter("b")).toBe(true);
    // B has a turn: A may borrow no more, though the capacity is not reached.
    expect(lines.tryEnter("a")).toBe(false);
    const order: string[] = [];
    const bWaits = lines.enter("b").then(() => order.push("b"));
    const bBorrows = lines.enter("b").then(() => order.push("b borrows"));
    // A's turns end: B, alone now, takes its share, then borrows.
    lines.leave("a");
    lines.leave("a");
    lines.leave("a");
    await Promise.all([bWaits, bBorrows]);
    expect(order).toEqual(["b", "b borrows"]);
  });

  it("without a capacity, holds each tenant to its share", () => {
    const lines = new TenantLines(2);
    expect([lines.tryEnter("a"), lines.tryEnter("a"), lines.tryEnter("a")]).toEqual([true, true, false]);
  });

  it("gives a place up when the waiter's signal aborts", async () => {
    const lines = new TenantLines(1, 1);
    lines.tryEnter("a");
    const gone = new AbortController();
    const waiting = lines.enter("a", gone.signal);
    gone.abort(new Error("gone"));
    await expect(waiting).rejects.toThrow("gone");
    lines.leave("a");
    expect(lines.tryEnter("a")).toBe(true);
  });
});
