import { Migration } from "@mikro-orm/migrations";
import { APP_ROLE, CREATE_APP_ROLE, disableTenantRls, enableTenantRls, tenantScanFunction } from "../rls.ts";

// Tenant-owned tables of the earlier migrations, children after parents.
const TABLES = [
  "tools",
  "agents",
  "agent_versions",
  "agent_tools",
  "agent_templates",
  "credentials",
  "agent_credentials",
  "executions",
  "execution_events",
  "execution_retention",
  "execution_purges",
  "idempotency_keys",
];

// Read across tenants by the system jobs' functions below.
const SCANNED = new Set(["agents", "executions", "execution_retention"]);

const FUNCTIONS = [
  "tenants_with_expired_agents(p_now timestamptz)",
  "tenants_with_expired_executions(p_now timestamptz, p_default_days integer)",
  "tenants_with_orphaned_executions(p_instance_id varchar, p_stale_before timestamptz)",
];

/**
 * Row-level security on every tenant-owned table (src/db/rls.ts): the
 * runtime role APP_ROLE, its privileges on this database, one tenant policy
 * per table, and the SECURITY DEFINER functions through which the system
 * jobs (agent purge, execution retention, orphan sweep) learn which tenants
 * need work. Down leaves the role: it belongs to the cluster, and other
 * databases may use it.
 */
export class Migration20261124000000RowLevelSecurity extends Migration {
  override name = "Migration20261124000000RowLevelSecurity";

  override up(): void {
    this.addSql(CREATE_APP_ROLE);
    this.addSql(`do $$ begin execute format('grant connect on database %I to ${APP_ROLE}', current_database()); end $$`);
    this.addSql(`grant usage on schema public to ${APP_ROLE}`);
    for (const table of TABLES) enableTenantRls(this, table, { systemScan: SCANNED.has(table) });

    tenantScanFunction(
      this,
      "tenants_with_expired_agents",
      "p_now timestamptz",
      `select distinct a.tenant_id from public.agents a where a.delete_time is not null and a.purge_time <= p_now`,
    );
    // Tenants holding an execution older than their retention (the default when they set none).
    tenantScanFunction(
      this,
      "tenants_with_expired_executions",
      "p_now timestamptz, p_default_days integer",
      `select t.tenant_id from (select distinct e.tenant_id from public.executions e) t
        where exists (
          select 1 from public.executions e
           where e.tenant_id = t.tenant_id
             and e.create_time < p_now - make_interval(days => coalesce(
               (select r.retention_days from public.execution_retention r where r.tenant_id = t.tenant_id), p_default_days)))`,
    );
    tenantScanFunction(
      this,
      "tenants_with_orphaned_executions",
      "p_instance_id varchar, p_stale_before timestamptz",
      `select distinct e.tenant_id from public.executions e
        where e.status in ('QUEUED', 'RUNNING')
          and (e.instance_id = p_instance_id or coalesce(e.heartbeat_time, e.create_time) < p_stale_before)`,
    );
  }

  override down(): void {
    for (const fn of FUNCTIONS) this.addSql(`drop function if exists ${fn}`);
    for (const table of [...TABLES].reverse()) disableTenantRls(this, table);
    this.addSql(`revoke usage on schema public from ${APP_ROLE}`);
    this.addSql(`do $$ begin execute format('revoke connect on database %I from ${APP_ROLE}', current_database()); end $$`);
  }
}
