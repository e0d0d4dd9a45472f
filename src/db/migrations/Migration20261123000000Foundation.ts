import { Migration } from "@mikro-orm/migrations";

/**
 * Tools, and the agent-tool link table that keeps a tool from being deleted
 * while an agent uses it (agents themselves arrive in a later migration).
 * Every tenant-owned table: tenant_id NOT NULL and indexed, every unique
 * constraint includes tenant_id, and foreign keys are composite through
 * tenant_id so a link can never point into another tenant.
 */
export class Migration20261123000000Foundation extends Migration {
  override name = "Migration20261123000000Foundation";

  override up(): void {
    this.addSql(`
      create table tools (
        id uuid primary key,
        tenant_id varchar(64) not null,
        name varchar(100) not null,
        description text not null,
        parameters jsonb null,
        create_time timestamptz not null,
        update_time timestamptz not null,
        version integer not null default 1,
        constraint tools_tenant_id_id_unique unique (tenant_id, id),
        constraint tools_tenant_id_name_unique unique (tenant_id, name)
      )`);
    this.addSql(`create index tools_tenant_id_index on tools (tenant_id)`);
    this.addSql(`
      create table agent_tools (
        tenant_id varchar(64) not null,
        agent_id uuid not null,
        tool_id uuid not null,
        create_time timestamptz not null,
        primary key (tenant_id, agent_id, tool_id),
        constraint agent_tools_tool_fk foreign key (tenant_id, tool_id)
          references tools (tenant_id, id) on delete restrict
      )`);
    this.addSql(`create index agent_tools_tenant_id_index on agent_tools (tenant_id)`);
    this.addSql(`create index agent_tools_tool_index on agent_tools (tenant_id, tool_id)`);
  }

  override down(): void {
    this.addSql(`drop table if exists agent_tools`);
    this.addSql(`drop table if exists tools`);
  }
}
