import { raw } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { Execution } from "./execution.entity.ts";

/** Aggregates of the executions created in one time bucket. */
export interface StatsRow {
  bucket: Date | null;
  count: number;
  succeeded: number;
  failed: number;
  timedOut: number;
  cancelled: number;
  latencyAvgMs: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  inputTokens: number;
  outputTokens: number;
  costMicros: number;
}

/** A bucket size as PostgreSQL's date_trunc names it. */
export type BucketUnit = "minute" | "hour" | "day";

/**
 * Statistics straight from the executions table: the (tenant_id,
 * create_time) index bounds the scan to the range, and percentiles are exact
 * (percentile_cont). `unit` undefined gives one row for the whole range.
 * Runs through a QueryBuilder with the tenant filter applied.
 */
export async function executionStats(
  em: EntityManager,
  range: { from: Date; to: Date; agentId: string },
  unit: BucketUnit | undefined,
): Promise<StatsRow[]> {
  // Buckets are UTC hours and days whatever the session's TimeZone is.
  const bucket = unit ? `date_trunc('${unit}', e.create_time, 'UTC')` : "null::timestamptz";
  const qb = em
    .createQueryBuilder(Execution, "e")
    .select([
      raw(`${bucket} as bucket`),
      raw(`count(*)::int as count`),
      raw(`(count(*) filter (where e.status = 'SUCCEEDED'))::int as succeeded`),
      raw(`(count(*) filter (where e.status = 'FAILED'))::int as failed`),
      raw(`(count(*) filter (where e.status = 'TIMED_OUT'))::int as timed_out`),
      raw(`(count(*) filter (where e.status = 'CANCELLED'))::int as cancelled`),
      raw(`coalesce(avg(e.latency_ms), 0)::float8 as latency_avg`),
      raw(`coalesce(percentile_cont(0.5) within group (order by e.latency_ms), 0)::float8 as latency_p50`),
      raw(`coalesce(percentile_cont(0.95) within group (order by e.latency_ms), 0)::float8 as latency_p95`),
      raw(`coalesce(sum(e.input_tokens), 0)::bigint as input_tokens`),
      raw(`coalesce(sum(e.output_tokens), 0)::bigint as output_tokens`),
      raw(`coalesce(sum(e.cost_micros), 0)::bigint as cost_micros`),
    ])
    .where({
      createTime: { $gte: range.from, $lt: range.to },
      ...(range.agentId ? { agentId: range.agentId } : {}),
    });
  if (unit) qb.groupBy(raw(bucket)).orderBy({ [raw(bucket)]: "asc" });
  await qb.applyFilters();
  const rows = await qb.execute<Record<string, unknown>[]>("all", false);
  return rows.map((r) => ({
    bucket: r.bucket ? new Date(r.bucket as string) : null,
    count: Number(r.count),
    succeeded: Number(r.succeeded),
    failed: Number(r.failed),
    timedOut: Number(r.timed_out),
    cancelled: Number(r.cancelled),
    latencyAvgMs: Number(r.latency_avg),
    latencyP50Ms: Number(r.latency_p50),
    latencyP95Ms: Number(r.latency_p95),
    inputTokens: Number(r.input_tokens),
    outputTokens: Number(r.output_tokens),
    costMicros: Number(r.cost_micros),
  }));
}
