import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APP_ROLE, assertRuntimeRole } from "../../src/db/rls.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

/*
 * The schema's tenant boundary, read from the catalog so that a table added
 * later is held to it without anyone editing this file: every table with a
 * tenant_id column has row-level security enabled and forced, a tenant policy
 * with both USING and WITH CHECK, an index led by tenant_id, and foreign keys
 * only through tenant_id; the service's role is one RLS holds.
 */

// Tables without tenant_id, each with its reason.
const NOT_TENANT_OWNED: Record<string, string> = {
  mikro_orm_migrations: "the migrator's bookkeeping; the service's role has no access",
};

// What every tenant policy compares, as PostgreSQL prints it back.
const TENANT_CONDITION =
  /^\(\(tenant_id\)::text = \( SELECT NULLIF\(current_setting\('app\.tenant_id'::text, true\), ''::text\) AS "nullif"\)\)$/;

let db: TestDatabase;
let owner: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.close();
  await owner?.close();
});

type TableRow = { name: string; enabled: boolean; forced: boolean; tenant_type: string | null; tenant_nullable: boolean | null };

async function tables(): Promise<TableRow[]> {
  return db.sql<TableRow>(
    `select c.relname as name, c.relrowsecurity as enabled, c.relforcerowsecurity as forced,
            format_type(a.atttypid, a.atttypmod) as tenant_type, not a.attnotnull as tenant_nullable
       from pg_class c
       join pg_namespace n on n.oid = c.relnamespace
       left join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped
      where n.nspname = 'public' and c.relkind in ('r', 'p')
      order by 1`,
  );
}

async function tenantTables(): Promise<TableRow[]> {
  return (await tables()).filter((t) => t.tenant_type !== null);
}

describe("every table with a tenant_id column", () => {
  it("is every table but the listed exceptions, with tenant_id varchar(64) not null", async () => {
    const all = await tables();
    expect(all.filter((t) => t.tenant_type === null).map((t) => t.name)).toEqual(Object.keys(NOT_TENANT_OWNED));
    for (const t of all.filter((t) => t.tenant_type !== null)) {
      expect([t.name, t.tenant_type, t.tenant_nullable]).toEqual([t.name, "character varying(64)", false]);
    }
    expect((await tenantTables()).length).toBeGreaterThanOrEqual(12);
  });

  it("has row-level security enabled and forced (so the owner is held too)", async () => {
    for (const t of await tenantTables()) {
      expect([t.name, t.enabled, t.forced]).toEqual([t.name, true, true]);
    }
  });

  it("has a tenant policy for every command and role, with both USING and WITH CHECK on app.tenant_id", async () => {
    const policies = await db.sql<{ table: string; name: string; permissive: string; roles: string[]; cmd: string; qual: string | null; with_check: string | null }>(
      `select tablename as table, policyname as name, permissive, roles::text[] as roles, cmd, qual, with_check
         from pg_policies where schemaname = 'public' order by 1, 2`,
    );
    for (const t of await tenantTables()) {
      const own = policies.filter((p) => p.table === t.name);
      const tenant = own.filter((p) => p.cmd === "ALL");
      expect(tenant.map((p) => [p.name, p.permissive, p.roles])).toEqual([[`${t.name}_tenant_isolation`, "PERMISSIVE", ["public"]]]);
      expect(tenant[0]!.qual).toMatch(TENANT_CONDITION);
      expect(tenant[0]!.with_check).toMatch(TENANT_CONDITION);
      // Any other policy only lets the owner's system-job functions read:
      // SELECT, not for the service's role, and only while app.system_scan is on.
      for (const other of own.filter((p) => p.cmd !== "ALL")) {
        expect([other.name, other.cmd, other.with_check]).toEqual([`${t.name}_system_scan`, "SELECT", null]);
        expect(other.roles).not.toContain("public");
        expect(other.roles).not.toContain(APP_ROLE);
        expect(other.qual).toContain("current_setting('app.system_scan'::text, true)");
      }
    }
  });

  it("has a (non-partial) index whose first column is tenant_id, which the policy's condition can use", async () => {
    const leading = await db.sql<{ table: string }>(
      `select distinct t.relname as table
         from pg_index x
         join pg_class t on t.oid = x.indrelid
         join pg_attribute a on a.attrelid = t.oid and a.attnum = x.indkey[0]
        where a.attname = 'tenant_id' and x.indpred is null`,
    );
    const indexed = new Set(leading.map((r) => r.table));
    for (const t of await tenantTables()) {
      expect([t.name, indexed.has(t.name)]).toEqual([t.name, true]);
    }
  });

  it("grants the service's role exactly SELECT, INSERT, UPDATE and DELETE", async () => {
    const grants = await db.sql<{ table: string; privileges: string[] }>(
      `select table_name as table, array_agg(privilege_type::text order by privilege_type) as privileges
         from information_schema.role_table_grants
        where table_schema = 'public' and grantee = ?
        group by 1 order by 1`,
      [APP_ROLE],
    );
    const tenant = await tenantTables();
    expect(grants.map((g) => g.table)).toEqual(tenant.map((t) => t.name));
    for (const g of grants) expect([g.table, g.privileges]).toEqual([g.table, ["DELETE", "INSERT", "SELECT", "UPDATE"]]);
  });
});

describe("foreign keys", () => {
  type ForeignKey = { name: string; table: string; parent: string; columns: string[]; parent_columns: string[] };
  const foreignKeys = () =>
    db.sql<ForeignKey>(
      `select con.conname as name, con.conrelid::regclass::text as table, con.confrelid::regclass::text as parent,
              array(select a.attname::text from unnest(con.conkey) with ordinality k(attnum, i)
                      join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.attnum order by k.i) as columns,
              array(select a.attname::text from unnest(con.confkey) with ordinality k(attnum, i)
                      join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.attnum order by k.i) as parent_columns
         from pg_constraint con join pg_namespace n on n.oid = con.connamespace
        where con.contype = 'f' and n.nspname = 'public' order by 1`,
    );

  it("all go through tenant_id: a child can only point at a parent of its own tenant", async () => {
    const keys = await foreignKeys();
    expect(keys.map((k) => k.name)).toEqual(
      expect.arrayContaining([
        "agent_credentials_agent_fk",
        "agent_credentials_credential_fk",
        "agent_tools_agent_fk",
        "agent_tools_tool_fk",
        "agent_versions_agent_fk",
        "execution_events_execution_fk",
        "executions_agent_fk",
        "executions_parent_fk",
      ]),
    );
    for (const k of keys) {
      expect([k.name, k.columns[0], k.parent_columns[0]]).toEqual([k.name, "tenant_id", "tenant_id"]);
    }
  });

  describe("refuse a link across tenants made by SQL as the owner, past row-level security", () => {
    const rowsOf = () => ({ tool: randomUUID(), agent: randomUUID(), credential: randomUUID(), execution: randomUUID() });
    const ids = { A: rowsOf(), B: rowsOf() };

    beforeAll(async () => {
      for (const [tenant, own] of Object.entries(ids)) {
        const t = `fk-${tenant}`;
        await db.sql("insert into tools (id, tenant_id, name, description, create_time, update_time) values (?, ?, 't', 'd', now(), now())", [own.tool, t]);
        await db.sql(
          `insert into agents (id, tenant_id, name, role, description, agent_type, state, visibility, creator, create_time, update_time)
           values (?, ?, 'a', 'r', '', 'N8N', 'ACTIVE', 'PRIVATE', 'c', now(), now())`,
          [own.agent, t],
        );
        await db.sql(
          `insert into credentials (id, tenant_id, name, description, type, state, secret_hint, secret_version, creator, create_time, update_time)
           values (?, ?, 'c', '', 'BEARER_TOKEN', 'REVOKED', '', 1, 'c', now(), now())`,
          [own.credential, t],
        );
        await insertExecution(t, own.execution, own.agent, null);
      }
    });

    function insertExecution(tenant: string, id: string, agent: string, parent: string | null) {
      return db.sql(
        `insert into executions (id, tenant_id, agent_id, agent_version, parent_execution_id, session_id, status, prompt, model, response,
           input_tokens, output_tokens, cost_micros, error_code, error_message, error_detail, request_hash, creator, test_model, instance_id, create_time)
         values (?, ?, ?, 1, ?, '', 'SUCCEEDED', 'p', 'm', '', 0, 0, 0, '', '', '', '', 'c', true, 'i', now())`,
        [id, tenant, agent, parent],
      );
    }

    const B = "fk-B";
    const refused = (constraint: string) => new RegExp(`violates foreign key constraint "${constraint}"`);

    it("agent_tools: B's link to A's tool, or of A's agent", async () => {
      const link = "insert into agent_tools (tenant_id, agent_id, tool_id, create_time) values (?, ?, ?, now())";
      await expect(db.sql(link, [B, ids.B.agent, ids.A.tool])).rejects.toThrow(refused("agent_tools_tool_fk"));
      await expect(db.sql(link, [B, ids.A.agent, ids.B.tool])).rejects.toThrow(refused("agent_tools_agent_fk"));
      await db.sql(link, [B, ids.B.agent, ids.B.tool]);
    });

    it("agent_credentials: B's binding of A's credential, or to A's agent", async () => {
      const bind = "insert into agent_credentials (tenant_id, agent_id, credential_id, create_time) values (?, ?, ?, now())";
      await expect(db.sql(bind, [B, ids.B.agent, ids.A.credential])).rejects.toThrow(refused("agent_credentials_credential_fk"));
      await expect(db.sql(bind, [B, ids.A.agent, ids.B.credential])).rejects.toThrow(refused("agent_credentials_agent_fk"));
      await db.sql(bind, [B, ids.B.agent, ids.B.credential]);
    });

    it("agent_versions: B's version of A's agent", async () => {
      const version = `insert into agent_versions (tenant_id, agent_id, version, config, system_prompt, prompt_templates, author, change_note, active, create_time)
                       values (?, ?, 1, '{}', '', '[]', 'a', '', true, now())`;
      await expect(db.sql(version, [B, ids.A.agent])).rejects.toThrow(refused("agent_versions_agent_fk"));
      await db.sql(version, [B, ids.B.agent]);
    });

    it("executions: B's execution of A's agent, or as a child of A's execution", async () => {
      await expect(insertExecution(B, randomUUID(), ids.A.agent, null)).rejects.toThrow(refused("executions_agent_fk"));
      await expect(insertExecution(B, randomUUID(), ids.B.agent, ids.A.execution)).rejects.toThrow(refused("executions_parent_fk"));
      await insertExecution(B, randomUUID(), ids.B.agent, ids.B.execution);
    });

    it("execution_events: B's event of A's execution", async () => {
      const event = "insert into execution_events (tenant_id, execution_id, sequence, event) values (?, ?, 1, '{}')";
      await expect(db.sql(event, [B, ids.A.execution])).rejects.toThrow(refused("execution_events_execution_fk"));
      await db.sql(event, [B, ids.B.execution]);
    });
  });
});

describe("the system-job functions", () => {
  it("are SECURITY DEFINER with a fixed search_path, return tenant ids only, and only the service's role may call them", async () => {
    const functions = await db.sql<{ name: string; result: string; config: string[] | null; app: boolean; anyone: boolean }>(
      `select p.proname as name, pg_get_function_result(p.oid) as result, p.proconfig as config,
              has_function_privilege(?, p.oid, 'EXECUTE') as app,
              exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) acl where acl.grantee = 0) as anyone
         from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public' and p.prosecdef order by 1`,
      [APP_ROLE],
    );
    expect(functions.map((f) => f.name)).toEqual(
      expect.arrayContaining(["tenants_with_expired_agents", "tenants_with_expired_executions", "tenants_with_orphaned_executions"]),
    );
    for (const f of functions) {
      expect([f.name, f.result, f.config, f.app, f.anyone]).toEqual([
        f.name,
        "TABLE(tenant_id character varying)",
        ["search_path=pg_catalog, pg_temp"],
        true,
        false,
      ]);
    }
  });
});

describe("the service's role", () => {
  it("is neither superuser nor BYPASSRLS, may not create roles or databases, and is no other role's member", async () => {
    const [role] = await db.sql<Record<string, unknown>>(
      `select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolinherit,
              (select count(*)::int from pg_auth_members m where m.member = r.oid) as memberships
         from pg_roles r where rolname = ?`,
      [APP_ROLE],
    );
    expect(role).toMatchObject({ rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false, memberships: 0 });
  });

  it("owns nothing in the database", async () => {
    const [owned] = await db.sql<{ n: number }>(
      `select (select count(*) from pg_class where relowner = r.oid)
            + (select count(*) from pg_proc where proowner = r.oid)
            + (select count(*) from pg_namespace where nspowner = r.oid)
            + (select count(*) from pg_type where typowner = r.oid) as n
         from pg_roles r where rolname = ?`,
      [APP_ROLE],
    );
    expect(Number(owned!.n)).toBe(0);
  });

  it("is what the service's ORM connects as, and the start-up check passes it but refuses the owner", async () => {
    const em = db.orm.em.fork();
    expect(await em.getConnection().execute("select current_user as role")).toEqual([{ role: APP_ROLE }]);
    await expect(assertRuntimeRole(db.orm)).resolves.toBeUndefined();
    owner = await createTestDatabase({ rowLevelSecurity: false, suffix: "_owner" });
    await expect(assertRuntimeRole(owner.orm)).rejects.toThrow(/refusing to serve/);
  });
});
