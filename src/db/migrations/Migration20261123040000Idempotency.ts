import { Migration } from "@mikro-orm/migrations";

/** Request ids of Create* calls (AIP-155), remembered per tenant for 24 hours. */
export class Migration20261123040000Idempotency extends Migration {
  override name = "Migration20261123040000Idempotency";

  override up(): void {
    this.addSql(`
      create table idempotency_keys (
        tenant_id varchar(64) not null,
        request_id uuid not null,
        method varchar(100) not null,
        request_hash varchar(64) not null,
        resource_id varchar(64) null,
        create_time timestamptz not null,
        primary key (tenant_id, request_id)
      )`);
    this.addSql(`create index idempotency_keys_tenant_id_index on idempotency_keys (tenant_id)`);
    this.addSql(`create index idempotency_keys_create_time_index on idempotency_keys (create_time)`);
  }

  override down(): void {
    this.addSql(`drop table if exists idempotency_keys`);
  }
}
