import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BucketStore } from "../../src/pipeline/admission/bucket-store.ts";
import { postgresBuckets } from "../../src/pipeline/admission/postgres-buckets.ts";
import { redisBuckets } from "../../src/pipeline/admission/redis-buckets.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { REDIS_URL, redisUp, sleep } from "./support.ts";

/*
 * The two token-bucket stores take the same steps: a new bucket starts full,
 * each take spends a token, an empty bucket says when the next token is due,
 * and it refills at the rate, never past the burst; concurrent takes never
 * spend a token twice.
 */

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db?.close());

const stores: { name: string; enabled: boolean; open: () => BucketStore }[] = [
  { name: "the database", enabled: true, open: () => postgresBuckets(db.orm) },
  { name: "Redis", enabled: redisUp, open: () => redisBuckets(REDIS_URL) },
];

describe.each(stores)("buckets in $name", ({ enabled, open }) => {
  let store: BucketStore;
  beforeAll(() => {
    if (enabled) store = open();
  });
  afterAll(() => store?.close());
  const tenant = () => `bucket-${randomUUID().slice(0, 12)}`;

  it.runIf(enabled)("starts full, spends one token a take, and says when the next one is due", async () => {
    const t = tenant();
    for (let i = 0; i < 3; i++) expect((await store.take(t, 10, 3)).admitted).toBe(true);
    const refused = await store.take(t, 10, 3);
    expect(refused.admitted).toBe(false);
    // One token at 10 per second: at most 100 ms away.
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(100);
  });

  it.runIf(enabled)("says when the next token is due on the take that spends the last one", async () => {
    const t = tenant();
    // A rate slow enough that the takes themselves refill nothing that matters.
    const first = await store.take(t, 0.5, 2);
    expect(first).toEqual({ admitted: true, retryAfterMs: 0 });
    const last = await store.take(t, 0.5, 2);
    expect(last.admitted).toBe(true);
    // From (about) zero tokens, one at 0.5 per second is up to 2 s away.
    expect(last.retryAfterMs).toBeGreaterThan(1500);
    expect(last.retryAfterMs).toBeLessThanOrEqual(2000);
  });

  it.runIf(enabled)("refills at the rate and never past the burst", async () => {
    const t = tenant();
    for (let i = 0; i < 2; i++) await store.take(t, 20, 2);
    await sleep(120); // 2.4 tokens at 20 per second, capped at 2
    expect((await store.take(t, 20, 2)).admitted).toBe(true);
    expect((await store.take(t, 20, 2)).admitted).toBe(true);
    const refused = await store.take(t, 20, 2);
    expect(refused.admitted).toBe(false);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(50);
  });

  it.runIf(enabled)("admits exactly the burst of many concurrent takes", async () => {
    const t = tenant();
    // A rate slow enough that nothing refills while the takes run.
    const takes = await Promise.all(Array.from({ length: 40 }, () => store.take(t, 0.01, 7)));
    expect(takes.filter((take) => take.admitted)).toHaveLength(7);
    for (const take of takes.filter((x) => !x.admitted)) expect(take.retryAfterMs).toBeGreaterThan(1000);
  });

  it.runIf(enabled)("applies a changed rate and burst at the next take", async () => {
    const t = tenant();
    await store.take(t, 1, 1);
    expect((await store.take(t, 1, 1)).admitted).toBe(false);
    // A larger burst does not fill the bucket, a faster rate refills it sooner.
    const faster = await store.take(t, 1000, 5);
    expect(faster.admitted || faster.retryAfterMs <= 1).toBe(true);
  });
});
