import { TENANT_SETTING } from "../rls.ts";

// A bucket's state is worth less than the fsync of its commit: a crash loses
// at most the last moment of takes (wal_writer_delay, 200 ms by default),
// which only gives tenants a few extra tokens once. PostgreSQL reads the
// setting at commit: set for the transaction, it covers the take's own.
const ASYNC_COMMIT = `
        perform set_config('synchronous_commit', 'off', true);`;

/**
 * The SQL of take_rate_token, the one step of the database's token buckets
 * (src/pipeline/admission/postgres-buckets.ts), as each migration that writes it wrote
 * it: `asyncCommit` false is the first version (Migration20261123050000Tenants),
 * true the one that commits without waiting for the WAL flush.
 */
export function takeRateTokenFunction(options: { create: "create" | "create or replace"; asyncCommit: boolean }): string {
  return `      ${options.create} function take_rate_token(p_tenant_id varchar, p_bucket varchar, p_rate float8, p_burst float8)
        returns table (left_tokens float8, was_admitted boolean)
        language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
      declare
        previous text := current_setting('${TENANT_SETTING}', true);
        now_ts timestamptz := statement_timestamp();
        row_tokens float8;
        row_time timestamptz;
        level float8;
      begin${options.asyncCommit ? ASYNC_COMMIT : ""}
        perform set_config('${TENANT_SETTING}', p_tenant_id, true);
        insert into public.rate_limit_buckets (tenant_id, bucket, tokens, refill_time)
          values (p_tenant_id, p_bucket, p_burst, now_ts)
          on conflict (tenant_id, bucket) do nothing;
        select b.tokens, b.refill_time into row_tokens, row_time
          from public.rate_limit_buckets b
         where b.tenant_id = p_tenant_id and b.bucket = p_bucket
           for update;
        -- What was left plus the rate times the seconds since the last take,
        -- capped at the burst. statement_timestamp() is one clock for every
        -- process; a take that started before the last one committed refills
        -- nothing rather than going back in time.
        level := least(p_burst, row_tokens + p_rate * greatest(0, extract(epoch from (now_ts - row_time))::float8));
        was_admitted := level >= 1;
        left_tokens := case when was_admitted then level - 1 else level end;
        update public.rate_limit_buckets b
           set tokens = left_tokens, refill_time = greatest(row_time, now_ts)
         where b.tenant_id = p_tenant_id and b.bucket = p_bucket;
        perform set_config('${TENANT_SETTING}', coalesce(previous, ''), true);
        return next;
      end $$`;
}
