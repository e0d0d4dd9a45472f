import { Migration } from "@mikro-orm/migrations";

/**
 * Executions, their stream events, per-tenant retention and purge records.
 * The (tenant_id, create_time desc, id desc) index keeps ListExecutions'
 * keyset pages equally cheap at row 1 000 000 and at row 1; request ids are
 * unique per tenant so a retried ExecuteAgent finds its first run.
 */
export class Migration20261123030000Executions extends Migration {
  override name = "Migration20261123030000Executions";

  override up(): void {
    this.addSql(`
      create table executions (
        id uuid primary key,
        tenant_id varchar(64) not null,
        agent_id uuid not null,
        agent_version integer not null,
        parent_execution_id uuid null,
        session_id varchar(200) not null,
        status varchar(16) not null,
        prompt text not null,
        input jsonb null,
        model varchar(200) not null,
        response text not null,
        input_tokens bigint not null,
        output_tokens bigint not null,
        cost_micros bigint not null,
        latency_ms bigint null,
        time_to_first_output_ms bigint null,
        error_code varchar(32) not null,
        error_message text not null,
        error_detail text not null,
        request_id uuid null,
        request_hash varchar(64) not null,
        creator varchar(256) not null,
        test_model boolean not null,
        instance_id varchar(200) not null,
        heartbeat_time timestamptz null,
        create_time timestamptz not null,
        start_time timestamptz null,
        end_time timestamptz null,
        constraint executions_tenant_id_id_unique unique (tenant_id, id),
        constraint executions_agent_fk foreign key (tenant_id, agent_id)
          references agents (tenant_id, id) on delete cascade,
        constraint executions_parent_fk foreign key (tenant_id, parent_execution_id)
          references executions (tenant_id, id) on delete cascade
      )`);
    this.addSql(`create index executions_tenant_id_index on executions (tenant_id)`);
    this.addSql(`create index executions_tenant_id_create_time_index on executions (tenant_id, create_time desc, id desc)`);
    this.addSql(`create index executions_tenant_id_agent_id_create_time_index on executions (tenant_id, agent_id, create_time desc, id desc)`);
    this.addSql(`create index executions_tenant_id_parent_index on executions (tenant_id, parent_execution_id) where parent_execution_id is not null`);
    this.addSql(`create unique index executions_tenant_id_request_id_unique on executions (tenant_id, request_id) where request_id is not null`);
    this.addSql(`create index executions_unfinished_index on executions (instance_id, status) where status in ('QUEUED', 'RUNNING')`);

    this.addSql(`
      create table execution_events (
        tenant_id varchar(64) not null,
        execution_id uuid not null,
        sequence bigint not null,
        event jsonb not null,
        primary key (tenant_id, execution_id, sequence),
        constraint execution_events_execution_fk foreign key (tenant_id, execution_id)
          references executions (tenant_id, id) on delete cascade
      )`);
    this.addSql(`create index execution_events_tenant_id_index on execution_events (tenant_id)`);

    this.addSql(`
      create table execution_retention (
        tenant_id varchar(64) primary key,
        retention_days integer not null,
        update_time timestamptz not null
      )`);

    this.addSql(`
      create table execution_purges (
        id uuid primary key,
        tenant_id varchar(64) not null,
        count bigint not null,
        older_than timestamptz not null,
        actor varchar(256) not null,
        create_time timestamptz not null,
        constraint execution_purges_tenant_id_id_unique unique (tenant_id, id)
      )`);
    this.addSql(`create index execution_purges_tenant_id_index on execution_purges (tenant_id, create_time desc)`);
  }

  override down(): void {
    this.addSql(`drop table if exists execution_purges`);
    this.addSql(`drop table if exists execution_retention`);
    this.addSql(`drop table if exists execution_events`);
    this.addSql(`drop table if exists executions`);
  }
}
