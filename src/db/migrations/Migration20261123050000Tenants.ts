import { Migration } from "@mikro-orm/migrations";
import { APP_ROLE, CREATE_APP_ROLE, enableTenantRls } from "../rls.ts";
import { takeRateTokenFunction } from "./take-rate-token.ts";

// The tenant-owned tables made here, under row-level security like every other.
const TABLES = ["tenant_settings", "tenant_feature_toggles", "rate_limit_buckets"];

/**
 * Per-tenant settings: limit overrides (whose row is also the lock quota
 * checks take), feature toggles, and the token buckets of the request rate
 * limit when no Redis is configured. The partial index keeps counting a
 * tenant's unfinished executions (the concurrency quota) as cheap with a
 * million finished ones as with none. The tables get row-level security
 * here (src/db/rls.ts), the runtime role first if this database has none yet.
 *
 * take_rate_token is the one step of the database's token buckets (see
 * src/pipeline/admission/postgres-buckets.ts): it sets the tenant for its own upsert,
 * which row-level security then holds to that tenant's bucket, and puts the
 * previous setting back; one round trip, no explicit transaction.
 */
export class Migration20261123050000Tenants extends Migration {
  override name = "Migration20261123050000Tenants";

  override up(): void {
    this.addSql(`
      create table tenant_settings (
        tenant_id varchar(64) primary key,
        rate_per_second integer null,
        rate_burst integer null,
        max_agents integer null,
        max_tools integer null,
        max_credentials integer null,
        max_concurrent_executions integer null,
        create_time timestamptz not null,
        update_time timestamptz null,
        version integer not null default 1
      )`);

    this.addSql(`
      create table tenant_feature_toggles (
        tenant_id varchar(64) not null,
        name varchar(100) not null,
        enabled boolean not null,
        actor varchar(256) not null,
        update_time timestamptz not null,
        primary key (tenant_id, name)
      )`);
    this.addSql(`create index tenant_feature_toggles_tenant_id_index on tenant_feature_toggles (tenant_id)`);

    this.addSql(`
      create table rate_limit_buckets (
        tenant_id varchar(64) not null,
        bucket varchar(64) not null,
        tokens double precision not null,
        refill_time timestamptz not null,
        primary key (tenant_id, bucket)
      )`);
    this.addSql(`create index rate_limit_buckets_tenant_id_index on rate_limit_buckets (tenant_id)`);

    this.addSql(CREATE_APP_ROLE);
    for (const table of TABLES) enableTenantRls(this, table);

    this.addSql(takeRateTokenFunction({ create: "create", asyncCommit: false }));
    this.addSql(`revoke all on function take_rate_token(varchar, varchar, float8, float8) from public`);
    this.addSql(`grant execute on function take_rate_token(varchar, varchar, float8, float8) to ${APP_ROLE}`);

    this.addSql(
      `create index executions_tenant_id_unfinished_index on executions (tenant_id) where status in ('QUEUED', 'RUNNING')`,
    );
  }

  override down(): void {
    this.addSql(`drop index if exists executions_tenant_id_unfinished_index`);
    this.addSql(`drop function if exists take_rate_token(varchar, varchar, float8, float8)`);
    this.addSql(`drop table if exists rate_limit_buckets`);
    this.addSql(`drop table if exists tenant_feature_toggles`);
    this.addSql(`drop table if exists tenant_settings`);
  }
}
