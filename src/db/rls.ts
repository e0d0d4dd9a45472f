import type { MikroORM } from "@mikro-orm/core";
import type { Migration } from "@mikro-orm/migrations";
import type { EntityManager } from "@mikro-orm/postgresql";

/*
 * Row-level security: the database's own tenant boundary, under the ORM
 * filter of tenant.ts. Every tenant-owned table has RLS enabled and forced
 * with one policy, for every command, whose USING and WITH CHECK both compare
 * tenant_id with the transaction's `app.tenant_id` setting. The service
 * connects as APP_ROLE, which owns nothing and has neither SUPERUSER nor
 * BYPASSRLS; migrations run as the owner (the DATABASE_URL user).
 */

/** The role the service connects as; subject to every policy. */
export const APP_ROLE = "agent_platform_app";

/** The setting the policies compare tenant_id with, set per transaction (see scopeToTenant). */
export const TENANT_SETTING = "app.tenant_id";

// Lets the owner's system-job functions below, and nothing else, read tenant
// ids across tenants (the owner is subject to the policies too: FORCE).
const SYSTEM_SCAN_SETTING = "app.system_scan";

/**
 * The policy condition. The sub-select makes it an InitPlan, evaluated once
 * per query, so `tenant_id = $0` keeps using the tenant_id index. Without a
 * tenant the setting is NULL (never set on this connection) or '' (set
 * earlier by a transaction that ended): both match no row, and refuse every
 * write.
 */
export const TENANT_MATCH = `tenant_id = (select nullif(current_setting('${TENANT_SETTING}', true), ''))`;

/**
 * Creates APP_ROLE when it is missing. Roles belong to the cluster, not the
 * database, so several databases (test files, staging next to production)
 * migrating at once may race: the loser's CREATE fails with a duplicate,
 * which is fine. The owner needs CREATEROLE only when the role is missing.
 */
export const CREATE_APP_ROLE = `
  do $$
  begin
    if not exists (select from pg_catalog.pg_roles where rolname = '${APP_ROLE}') then
      create role ${APP_ROLE} login nosuperuser nobypassrls nocreatedb nocreaterole;
    end if;
  exception when duplicate_object or unique_violation then
    null;
  end $$`;

/** What makes a table tenant-owned under RLS; see enableTenantRls. */
export interface TenantRlsOptions {
  /** The table is read by a system-job function (tenantScanFunction) across tenants. */
  systemScan?: boolean;
}

/**
 * Puts a tenant-owned table (one with a `tenant_id` column) under row-level
 * security, and gives APP_ROLE its DML on it. Every migration that creates
 * such a table calls this; test/tenancy/rls-schema.test.ts fails for a table
 * with tenant_id that lacks it.
 */
export function enableTenantRls(migration: Migration, table: string, options: TenantRlsOptions = {}): void {
  migration.addSql(`alter table ${table} enable row level security`);
  migration.addSql(`alter table ${table} force row level security`);
  migration.addSql(
    `create policy ${table}_tenant_isolation on ${table} as permissive for all to public
       using (${TENANT_MATCH}) with check (${TENANT_MATCH})`,
  );
  if (options.systemScan) {
    // The owner's SECURITY DEFINER functions read tenant ids here; SELECT
    // only, and only while such a function runs.
    migration.addSql(
      `create policy ${table}_system_scan on ${table} as permissive for select to current_user
         using ((select current_setting('${SYSTEM_SCAN_SETTING}', true)) = 'on')`,
    );
  }
  migration.addSql(`grant select, insert, update, delete on ${table} to ${APP_ROLE}`);
}

/** Undoes enableTenantRls (the down of its migration). */
export function disableTenantRls(migration: Migration, table: string): void {
  migration.addSql(`revoke all on ${table} from ${APP_ROLE}`);
  migration.addSql(`drop policy if exists ${table}_system_scan on ${table}`);
  migration.addSql(`drop policy if exists ${table}_tenant_isolation on ${table}`);
  migration.addSql(`alter table ${table} no force row level security`);
  migration.addSql(`alter table ${table} disable row level security`);
}

/**
 * A SECURITY DEFINER function, owned by the owner, for a system job that
 * spans tenants: it returns only the distinct tenant ids that need work
 * (`tenant_id` column), never row data; the job then works per tenant
 * through a scoped EntityManager. `select` reads the tables' columns
 * qualified with `public.`; `params` is the argument list, e.g.
 * `p_now timestamptz`. APP_ROLE may execute it, nobody else.
 */
export function tenantScanFunction(migration: Migration, name: string, params: string, select: string): void {
  migration.addSql(
    `create function ${name}(${params}) returns table (tenant_id varchar)
       language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
     #variable_conflict use_column
     begin
       perform set_config('${SYSTEM_SCAN_SETTING}', 'on', true);
       return query ${select};
       perform set_config('${SYSTEM_SCAN_SETTING}', '', true);
     end $$`,
  );
  migration.addSql(`revoke all on function ${name}(${params}) from public`);
  migration.addSql(`grant execute on function ${name}(${params}) to ${APP_ROLE}`);
}

/**
 * Refuses to serve through a connection that row-level security would not
 * hold: one whose role is a superuser, has BYPASSRLS, or owns (or may act as
 * the owner of) a table of the schema.
 */
export async function assertRuntimeRole(orm: MikroORM): Promise<void> {
  const em = orm.em.fork() as EntityManager;
  const [role] = await em.getConnection().execute<{ name: string; superuser: boolean; bypassrls: boolean; owns: number }[]>(
    `select r.rolname as name, r.rolsuper as superuser, r.rolbypassrls as bypassrls,
            (select count(*)::int from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')) as owns
       from pg_catalog.pg_roles r where r.rolname = current_user`,
  );
  if (!role || role.superuser || role.bypassrls || role.owns > 0) {
    throw new Error(
      `refusing to serve as database role ${JSON.stringify(role?.name)}: it is a superuser, has BYPASSRLS or owns tables, ` +
        `so row-level security would not hold (APP_DATABASE_URL must name a role like ${APP_ROLE}; see README)`,
    );
  }
}
