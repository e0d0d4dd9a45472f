import { Migration } from "@mikro-orm/migrations";

/**
 * Credentials and the agent-credential link. A credential row holds
 * ciphertext only (see src/credentials/envelope.ts); a CHECK keeps every row
 * that is not revoked holding a complete sealed secret, and a revoked one
 * holding none. Links are composite through tenant_id: they cascade with the
 * agent and hold the credential back from deletion (RESTRICT).
 */
export class Migration20261123020000Credentials extends Migration {
  override name = "Migration20261123020000Credentials";

  override up(): void {
    this.addSql(`
      create table credentials (
        id uuid primary key,
        tenant_id varchar(64) not null,
        name varchar(100) not null,
        description text not null,
        type varchar(32) not null,
        state varchar(16) not null,
        secret_hint varchar(32) not null,
        secret_version integer not null,
        key_id varchar(64) null,
        wrapped_key bytea null,
        payload bytea null,
        expire_time timestamptz null,
        last_used_time timestamptz null,
        revoke_time timestamptz null,
        creator varchar(256) not null,
        create_time timestamptz not null,
        update_time timestamptz not null,
        version integer not null default 1,
        constraint credentials_tenant_id_id_unique unique (tenant_id, id),
        constraint credentials_tenant_id_name_unique unique (tenant_id, name),
        constraint credentials_state_check check (state in ('ACTIVE', 'REVOKED')),
        constraint credentials_sealed_check check (
          (state = 'ACTIVE' and key_id is not null and wrapped_key is not null and payload is not null)
          or (state = 'REVOKED' and key_id is null and wrapped_key is null and payload is null)
        )
      )`);
    this.addSql(`create index credentials_tenant_id_index on credentials (tenant_id)`);
    // RewrapCredentials looks rows up by key.
    this.addSql(`create index credentials_tenant_id_key_id_index on credentials (tenant_id, key_id, id) where key_id is not null`);

    this.addSql(`
      create table agent_credentials (
        tenant_id varchar(64) not null,
        agent_id uuid not null,
        credential_id uuid not null,
        create_time timestamptz not null,
        primary key (tenant_id, agent_id, credential_id),
        constraint agent_credentials_agent_fk foreign key (tenant_id, agent_id)
          references agents (tenant_id, id) on delete cascade,
        constraint agent_credentials_credential_fk foreign key (tenant_id, credential_id)
          references credentials (tenant_id, id) on delete restrict
      )`);
    this.addSql(`create index agent_credentials_tenant_id_index on agent_credentials (tenant_id)`);
    this.addSql(`create index agent_credentials_credential_index on agent_credentials (tenant_id, credential_id)`);
  }

  override down(): void {
    this.addSql(`drop table if exists agent_credentials`);
    this.addSql(`drop table if exists credentials`);
  }
}
