import { Migration } from "@mikro-orm/migrations";

/**
 * Agents, their immutable versions and tenant templates; the agent side of
 * the agent-tool link. Names are unique among agents that are not deleted
 * (partial index) so a soft-deleted agent frees its name; exactly one
 * active version per agent is enforced here, not only in code.
 */
export class Migration20261123010000Agents extends Migration {
  override name = "Migration20261123010000Agents";

  override up(): void {
    this.addSql(`
      create table agents (
        id uuid primary key,
        tenant_id varchar(64) not null,
        name varchar(100) not null,
        role varchar(100) not null,
        description text not null,
        agent_type varchar(32) not null,
        state varchar(16) not null,
        tags text[] not null default '{}',
        capabilities text[] not null default '{}',
        visibility varchar(16) not null,
        creator varchar(256) not null,
        create_time timestamptz not null,
        update_time timestamptz not null,
        delete_time timestamptz null,
        purge_time timestamptz null,
        version integer not null default 1,
        constraint agents_tenant_id_id_unique unique (tenant_id, id)
      )`);
    this.addSql(`create index agents_tenant_id_index on agents (tenant_id)`);
    this.addSql(`create unique index agents_tenant_id_name_live_unique on agents (tenant_id, name) where delete_time is null`);
    this.addSql(`create index agents_tenant_id_create_time_index on agents (tenant_id, create_time desc, id desc)`);
    this.addSql(`create index agents_tenant_id_name_index on agents (tenant_id, name, id)`);
    this.addSql(`create index agents_tags_index on agents using gin (tags)`);
    this.addSql(`create index agents_purge_time_index on agents (purge_time) where purge_time is not null`);

    this.addSql(`
      create table agent_versions (
        tenant_id varchar(64) not null,
        agent_id uuid not null,
        version integer not null,
        config jsonb not null,
        system_prompt text not null,
        prompt_templates jsonb not null,
        author varchar(256) not null,
        change_note text not null,
        active boolean not null,
        create_time timestamptz not null,
        primary key (tenant_id, agent_id, version),
        constraint agent_versions_agent_fk foreign key (tenant_id, agent_id)
          references agents (tenant_id, id) on delete cascade
      )`);
    this.addSql(`create index agent_versions_tenant_id_index on agent_versions (tenant_id)`);
    this.addSql(
      `create unique index agent_versions_one_active on agent_versions (tenant_id, agent_id) where active`,
    );

    this.addSql(`
      alter table agent_tools add constraint agent_tools_agent_fk foreign key (tenant_id, agent_id)
        references agents (tenant_id, id) on delete cascade`);

    this.addSql(`
      create table agent_templates (
        id uuid primary key,
        tenant_id varchar(64) not null,
        name varchar(100) not null,
        description text not null,
        agent_type varchar(32) not null,
        config jsonb not null,
        system_prompt text not null,
        prompt_templates jsonb not null,
        create_time timestamptz not null,
        constraint agent_templates_tenant_id_id_unique unique (tenant_id, id),
        constraint agent_templates_tenant_id_name_unique unique (tenant_id, name)
      )`);
    this.addSql(`create index agent_templates_tenant_id_index on agent_templates (tenant_id)`);
  }

  override down(): void {
    this.addSql(`drop table if exists agent_templates`);
    this.addSql(`alter table agent_tools drop constraint if exists agent_tools_agent_fk`);
    this.addSql(`drop table if exists agent_versions`);
    this.addSql(`drop table if exists agents`);
  }
}
