import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { msUntilToken, type BucketStore, type Take } from "./bucket-store.ts";

// The bucket of API calls; the table keys buckets by tenant and name.
const BUCKET = "api";

/**
 * Buckets in the `rate_limit_buckets` table, shared by every process on the
 * database. A take is one call of the take_rate_token function (migration
 * Migration20261123050000Tenants): one round trip, in which the function
 * creates the bucket full if need be, locks it, refills it for the time since
 * the last take by the database's clock, and takes a token if there is one.
 * The function sets the tenant for its own statements, so row-level security
 * holds it to the principal's bucket (the tenant admission named).
 */
export function postgresBuckets(orm: MikroORM): BucketStore {
  return {
    kind: "postgresql",
    async take(tenantId, ratePerSecond, burst): Promise<Take> {
      const connection = (orm.em.fork() as EntityManager).getConnection();
      const rows = await connection.execute<{ left_tokens: number; was_admitted: boolean }[]>(
        "select left_tokens, was_admitted from take_rate_token(?, ?, ?, ?)",
        [tenantId, BUCKET, ratePerSecond, burst],
      );
      const row = rows[0]!;
      return { admitted: row.was_admitted, retryAfterMs: msUntilToken(Number(row.left_tokens), ratePerSecond) };
    },
    async close() {},
  };
}
