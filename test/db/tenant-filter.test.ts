import { randomUUID } from "node:crypto";
import type { EntityManager } from "@mikro-orm/postgresql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentTool } from "../../src/bindings/agent-tool.entity.ts";
import { migrateDown, migrateUp } from "../../src/database.ts";
import { migrations } from "../../src/db/migrations/index.ts";
import { MissingTenantError, scopeToTenant, TenantMismatchError, TenantRescopeError } from "../../src/db/tenant.ts";
import { Tool } from "../../src/tools/tool.entity.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

/*
 * Tenant scoping at the ORM level (src/db/tenant.ts): the global `tenant`
 * filter, the tenant_id stamp on insert and the TenantGuard subscriber. Every
 * test runs twice: over row-level security (the service's connection), and
 * alone, on a connection as the owner that RLS does not hold (a superuser in
 * tests), where the filter must still isolate tenants by itself.
 *
 * What the filter guards: em.find / findOne / findAll / count / findAndCount,
 * nativeUpdate / nativeDelete (the filter adds `tenant_id = ?`), and inserts
 * through em.create + flush (stamp and guard).
 *
 * What it does NOT guard (MikroORM applies neither filters nor the
 * beforeCreate subscriber there), pinned under "paths the filter does not
 * guard" below: with the filter alone the gap is documented; over RLS the
 * database closes it.
 *   - em.createQueryBuilder(...) unless .applyFilters() is called;
 *   - raw SQL (em.execute, em.getConnection().execute);
 *   - find options `filters: false` (never in service code);
 *   - em.upsert / upsertMany: INSERT ... ON CONFLICT (id) DO UPDATE, which can
 *     overwrite another tenant's row, tenant_id included;
 *   - em.insert / insertMany: no stamp, no guard, any tenant_id goes in;
 *   - em.getReference(Tool, foreignId) + remove + flush: DELETE by primary
 *     key only.
 * Closed in the ORM layer, both ways: flushing a change to a getReference and
 * reassigning tenantId on a loaded entity (TenantGuard checks updates as well
 * as inserts); the identity map (findOne by primary key answers from it
 * without a query, so a fork may never be re-scoped to another tenant).
 *
 * On PostgreSQL the filter-only database has a suffix; the migration round
 * trip opens its database (the per-worker name again) only after the first
 * one is closed.
 */

type ToolRow = { id: string; tenant_id: string; name: string; description: string; version: number };

const layers = [
  { layer: "over row-level security", rowLevelSecurity: true },
  { layer: "alone (connected as the owner, which row-level security does not hold)", rowLevelSecurity: false },
];

describe.each(layers)("the tenant filter $layer", ({ rowLevelSecurity }) => {
let db: TestDatabase;

function fork(tenant?: string): EntityManager {
  const em = db.orm.em.fork() as EntityManager;
  if (tenant !== undefined) scopeToTenant(em, tenant);
  return em;
}

/** As the owner, past row-level security: what the database holds. */
function sql<T = Record<string, unknown>>(query: string, params: unknown[] = []): Promise<T[]> {
  return db.sql<T>(query, params);
}

async function rowOf(id: string): Promise<ToolRow | undefined> {
  const rows = await sql<ToolRow>("select id, tenant_id, name, description, version from tools where id = ?", [id]);
  return rows[0];
}

/** Creates a tool through the ORM on a fork scoped to `tenant`. */
async function toolOf(tenant: string, name: string): Promise<Tool> {
  const em = fork(tenant);
  const tool = em.create(Tool, { name, description: `${tenant}'s ${name}`, parameters: null });
  await em.flush();
  return tool;
}

  beforeAll(async () => {
    db = await createTestDatabase({ rowLevelSecurity, suffix: rowLevelSecurity ? "" : "_filter_only" });
  });
  afterAll(() => db?.close());

  it("makes a fork without tenant parameters throw on find, count and findOne instead of returning rows", async () => {
    const tool = await toolOf("fc-a", "fail-closed");
    const em = fork();
    await expect(em.find(Tool, {})).rejects.toThrow();
    await expect(em.findAll(Tool)).rejects.toThrow();
    await expect(em.count(Tool, {})).rejects.toThrow();
    await expect(em.findOne(Tool, { id: tool.id })).rejects.toThrow();
    await expect(em.findOne(Tool, tool.id)).rejects.toThrow();
    await expect(em.findAndCount(Tool, {})).rejects.toThrow();
    await expect(em.find(AgentTool, {})).rejects.toThrow();
    // The row is there; the fork just may not see it.
    expect((await rowOf(tool.id))?.tenant_id).toBe("fc-a");
  });

  it("makes a fork without tenant parameters throw on nativeUpdate and nativeDelete, changing nothing", async () => {
    const tool = await toolOf("fc-a", "fail-closed-native");
    const em = fork();
    await expect(em.nativeUpdate(Tool, { id: tool.id }, { description: "changed" })).rejects.toThrow();
    await expect(em.nativeDelete(Tool, { id: tool.id })).rejects.toThrow();
    expect((await rowOf(tool.id))?.description).toBe("fc-a's fail-closed-native");
  });

  it("refuses to insert from a fork without a tenant", async () => {
    const em = fork();
    const name = `no-tenant-${randomUUID()}`;
    // The stamp runs when the entity is created (MikroORM 7 applies onCreate
    // in em.create), so the refusal comes before any flush.
    expect(() => em.create(Tool, { name, description: "d", parameters: null })).toThrow(MissingTenantError);
    await em.flush();
    expect(await sql("select 1 from tools where name = ?", [name])).toEqual([]);
  });

  it("makes the global EntityManager refuse work", async () => {
    await expect(db.orm.em.find(Tool, {})).rejects.toThrow(/global/i);
  });

  it("stamps the fork's tenant on an inserted tool", async () => {
    const tool = await toolOf("stamp-a", "stamped");
    expect(tool.tenantId).toBe("stamp-a");
    expect(await sql("select tenant_id from tools where id = ?", [tool.id])).toEqual([{ tenant_id: "stamp-a" }]);
  });

  it("accepts a tenant set by hand when it is the fork's own", async () => {
    const em = fork("stamp-a");
    const tool = em.create(Tool, { tenantId: "stamp-a", name: "own-by-hand", description: "d", parameters: null });
    await em.flush();
    expect((await rowOf(tool.id))?.tenant_id).toBe("stamp-a");
  });

  it("refuses at flush an entity whose tenant was set by hand to another tenant, inserting nothing", async () => {
    const em = fork("guard-a");
    const name = `foreign-${randomUUID()}`;
    em.create(Tool, { tenantId: "guard-b", name, description: "d", parameters: null });
    await expect(em.flush()).rejects.toBeInstanceOf(TenantMismatchError);
    expect(await sql("select tenant_id from tools where name = ?", [name])).toEqual([]);
  });

  it("refuses a link row set by hand to another tenant, inserting nothing", async () => {
    const tool = await toolOf("guard-b", "linked");
    const em = fork("guard-a");
    em.create(AgentTool, { tenantId: "guard-b", agentId: randomUUID(), toolId: tool.id });
    await expect(em.flush()).rejects.toBeInstanceOf(TenantMismatchError);
    expect(await sql("select 1 from agent_tools where tool_id = ?", [tool.id])).toEqual([]);
  });

  describe("a fork scoped to another tenant", () => {
    let tool: Tool;
    let before: ToolRow | undefined;
    beforeAll(async () => {
      tool = await toolOf("iso-a", "a-only");
      before = await rowOf(tool.id);
    });

    it("finds none of A's rows, even naming A's tenant or id", async () => {
      const em = fork("iso-b");
      expect(await em.find(Tool, {})).toEqual([]);
      expect(await em.find(Tool, { id: { $in: [tool.id] } })).toEqual([]);
      expect(await em.find(Tool, { tenantId: "iso-a" })).toEqual([]);
      expect(await em.findOne(Tool, { id: tool.id })).toBeNull();
      expect(await em.findOne(Tool, tool.id)).toBeNull();
      expect(await em.findOne(Tool, { id: tool.id, tenantId: "iso-a" })).toBeNull();
      expect(await em.findAll(Tool)).toEqual([]);
    });

    it("counts none of A's rows", async () => {
      const em = fork("iso-b");
      expect(await em.count(Tool, {})).toBe(0);
      expect(await em.count(Tool, { id: tool.id })).toBe(0);
      expect(await em.count(Tool, { tenantId: "iso-a" })).toBe(0);
      // Control: A's own fork counts it.
      expect(await fork("iso-a").count(Tool, { id: tool.id })).toBe(1);
    });

    it("updates none of A's rows with nativeUpdate", async () => {
      const em = fork("iso-b");
      expect(await em.nativeUpdate(Tool, { id: tool.id }, { description: "by B" })).toBe(0);
      expect(await em.nativeUpdate(Tool, { tenantId: "iso-a" }, { description: "by B" })).toBe(0);
      expect(await em.nativeUpdate(Tool, {}, { description: "by B" })).toBe(0);
      expect(await rowOf(tool.id)).toEqual(before);
    });

    it("deletes none of A's rows with nativeDelete", async () => {
      const em = fork("iso-b");
      expect(await em.nativeDelete(Tool, { id: tool.id })).toBe(0);
      expect(await em.nativeDelete(Tool, { tenantId: "iso-a" })).toBe(0);
      expect(await em.nativeDelete(Tool, {})).toBe(0);
      expect(await rowOf(tool.id)).toEqual(before);
    });
  });

  // Paths MikroORM's filter does not cover. With the filter alone each test
  // pins the gap; over row-level security the database closes it.
  describe("paths the filter does not guard", () => {
    const gap = rowLevelSecurity ? "refused by row-level security" : "a gap of the filter alone";
    // What RLS answers to a write of a row outside the transaction's tenant.
    const policyViolation = /row-level security/;

    it(`em.insert on B's fork of a row of A: ${gap}`, async () => {
      const em = fork("gap-b");
      const id = randomUUID();
      const now = new Date();
      const insert = em.insert(Tool, {
        id,
        tenantId: "gap-a",
        name: "inserted-by-b",
        description: "from B",
        parameters: null,
        createTime: now,
        updateTime: now,
        version: 1,
      });
      if (rowLevelSecurity) {
        await expect(insert).rejects.toThrow(policyViolation);
        expect(await rowOf(id)).toBeUndefined();
      } else {
        await insert;
        expect((await rowOf(id))?.tenant_id).toBe("gap-a");
        expect((await fork("gap-a").findOne(Tool, id))?.description).toBe("from B");
      }
    });

    it(`em.upsert on B's fork over A's row: ${gap}`, async () => {
      const tool = await toolOf("gap-a", "upserted");
      const before = await rowOf(tool.id);
      const em = fork("gap-b");
      const now = new Date();
      const upsert = em.upsert(Tool, {
        id: tool.id,
        tenantId: "gap-b",
        name: "upserted",
        description: "now B's",
        parameters: null,
        createTime: now,
        updateTime: now,
        version: 1,
      });
      if (rowLevelSecurity) {
        await expect(upsert).rejects.toThrow(policyViolation);
        expect(await rowOf(tool.id)).toEqual(before);
      } else {
        await upsert;
        const row = await rowOf(tool.id);
        expect(row?.tenant_id).toBe("gap-b");
        expect(row?.description).toBe("now B's");
        expect(await fork("gap-a").findOne(Tool, tool.id)).toBeNull();
      }
    });

    it(`a QueryBuilder without applyFilters on B's fork reading A's row: ${gap}`, async () => {
      const tool = await toolOf("gap-a", "queried");
      const em = fork("gap-b");
      const rows = await em.createQueryBuilder(Tool).select("*").where({ id: tool.id }).getResultList();
      expect(rows.map((r) => r.tenantId)).toEqual(rowLevelSecurity ? [] : ["gap-a"]);
      const all = await em.createQueryBuilder(Tool).select("*").getResultList();
      expect(all.some((t) => t.tenantId !== "gap-b")).toBe(!rowLevelSecurity);
    });

    it(`a QueryBuilder without applyFilters on B's fork updating A's row: ${gap}`, async () => {
      const tool = await toolOf("gap-a", "qb-updated");
      const em = fork("gap-b");
      const updated = await em.createQueryBuilder(Tool).update({ description: "by B" }).where({ id: tool.id }).execute("run");
      expect(updated.affectedRows).toBe(rowLevelSecurity ? 0 : 1);
      expect((await rowOf(tool.id))?.description).toBe(rowLevelSecurity ? "gap-a's qb-updated" : "by B");
    });

    it(`find with filters: false on B's fork: ${gap}`, async () => {
      const tool = await toolOf("gap-a", "unfiltered");
      const em = fork("gap-b");
      const found = await em.find(Tool, { id: tool.id }, { filters: false });
      expect(found.map((t) => t.tenantId)).toEqual(rowLevelSecurity ? [] : ["gap-a"]);
    });

    it(`raw SQL through em.execute on B's fork: ${gap}`, async () => {
      const tool = await toolOf("gap-a", "raw-read");
      const em = fork("gap-b");
      const rows = await em.execute("select tenant_id from tools where id = ?", [tool.id]);
      expect(rows).toEqual(rowLevelSecurity ? [] : [{ tenant_id: "gap-a" }]);
      const planted = em.execute(
        "insert into tools (id, tenant_id, name, description, create_time, update_time) values (?, 'gap-a', ?, 'd', now(), now())",
        [randomUUID(), `raw-${randomUUID()}`],
      );
      if (rowLevelSecurity) await expect(planted).rejects.toThrow(policyViolation);
      else await planted;
    });

    it(`raw SQL on the bare connection, which carries no tenant: ${rowLevelSecurity ? "sees no row at all" : "a gap of the filter alone"}`, async () => {
      const tool = await toolOf("gap-a", "raw-connection");
      const rows = await fork("gap-b").getConnection().execute("select tenant_id from tools where id = ?", [tool.id]);
      expect(rows).toEqual(rowLevelSecurity ? [] : [{ tenant_id: "gap-a" }]);
    });

    it(`getReference + remove + flush on B's fork of A's row: ${gap}`, async () => {
      const tool = await toolOf("gap-a", "removed");
      const em = fork("gap-b");
      em.remove(em.getReference(Tool, tool.id));
      await em.flush().catch(() => undefined);
      expect((await rowOf(tool.id))?.tenant_id).toBe(rowLevelSecurity ? "gap-a" : undefined);
    });

    it("refuses to flush a change to a getReference on B's fork, leaving A's row unchanged", async () => {
      // Closed by TenantGuard.beforeUpdate: a reference carries no tenant_id,
      // which differs from the fork's tenant.
      const tool = await toolOf("gap-a", "referenced");
      const em = fork("gap-b");
      const ref = em.getReference(Tool, tool.id);
      ref.description = "changed by B";
      await expect(em.flush()).rejects.toBeInstanceOf(TenantMismatchError);
      const row = await rowOf(tool.id);
      expect(row?.tenant_id).toBe("gap-a");
      expect(row?.description).not.toBe("changed by B");
    });

    it("refuses to move a loaded entity to another tenant at flush", async () => {
      const tool = await toolOf("gap-a", "moved");
      const em = fork("gap-a");
      const loaded = await em.findOneOrFail(Tool, tool.id);
      loaded.tenantId = "gap-b";
      await expect(em.flush()).rejects.toBeInstanceOf(TenantMismatchError);
      expect((await rowOf(tool.id))?.tenant_id).toBe("gap-a");
    });

    it("refuses to re-scope a fork to another tenant, whose identity map holds the first tenant's entities", async () => {
      const tool = await toolOf("gap-a", "identity-map");
      const em = fork("gap-a");
      await em.findOneOrFail(Tool, tool.id);
      expect(() => scopeToTenant(em, "gap-b")).toThrow(TenantRescopeError);
      // The same tenant again is harmless.
      scopeToTenant(em, "gap-a");
      expect((await em.findOneOrFail(Tool, tool.id)).tenantId).toBe("gap-a");
    });
  });
});

describe("migrations", () => {
  let mdb: TestDatabase;
  beforeAll(async () => {
    mdb = await createTestDatabase();
  });
  afterAll(() => mdb?.close());

  // As the owner: the service's role sees only the tables granted to it.
  const query = <T>(text: string) => mdb.sql<T>(text);
  const publicTables = async () =>
    (await query<{ table_name: string }>(
      "select table_name from information_schema.tables where table_schema = 'public' order by table_name",
    )).map((r) => r.table_name);
  const schemaSnapshot = async () => ({
    columns: await query(
      `select table_name, column_name, data_type, character_maximum_length, is_nullable, column_default
         from information_schema.columns where table_schema = 'public' and table_name <> 'mikro_orm_migrations'
         order by table_name, column_name`,
    ),
    constraints: await query(
      `select c.conrelid::regclass::text as table_name, c.conname, pg_get_constraintdef(c.oid) as def
         from pg_constraint c join pg_namespace n on n.oid = c.connamespace
        where n.nspname = 'public' and c.conrelid::regclass::text <> 'mikro_orm_migrations'
        order by 1, 2`,
    ),
    indexes: await query(
      `select tablename, indexname, indexdef from pg_indexes
        where schemaname = 'public' and tablename <> 'mikro_orm_migrations' order by 1, 2`,
    ),
    rowLevelSecurity: await query(
      `select c.relname, c.relrowsecurity, c.relforcerowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind = 'r' order by 1`,
    ),
    policies: await query(
      `select tablename, policyname, permissive, roles::text[] as roles, cmd, qual, with_check from pg_policies
        where schemaname = 'public' order by 1, 2`,
    ),
    functions: await query(
      `select p.proname, pg_get_function_identity_arguments(p.oid) as args, p.prosecdef, p.proacl::text[] as acl
         from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public' order by 1`,
    ),
    grants: await query(
      `select table_name, privilege_type from information_schema.role_table_grants
        where table_schema = 'public' and grantee = 'agent_platform_app' order by 1, 2`,
    ),
  });

  it("reverts every migration down to an empty schema and re-applies them to the same schema", async () => {
    const names = migrations.map((m) => m.name);
    const before = await schemaSnapshot();
    expect(await publicTables()).toEqual(expect.arrayContaining(["tools", "agent_tools"]));

    // One step: exactly the latest migration.
    expect(await migrateDown(mdb.orm)).toEqual([names.at(-1)]);
    // Then the rest, one at a time, newest first.
    const reverted = [names.at(-1)];
    for (let step = 0; step < names.length; step++) {
      const more = await migrateDown(mdb.orm);
      if (more.length === 0) break;
      reverted.push(...more);
    }
    expect(reverted).toEqual([...names].reverse());
    expect(await query("select to_regclass('public.tools') as t")).toEqual([{ t: null }]);
    expect(await query("select to_regclass('public.agent_tools') as t")).toEqual([{ t: null }]);
    expect(await publicTables()).toEqual(["mikro_orm_migrations"]);
    const emptied = await schemaSnapshot();
    expect([emptied.policies, emptied.functions, emptied.grants]).toEqual([[], [], []]);

    expect(await migrateUp(mdb.orm)).toEqual(names);
    expect(await query("select to_regclass('public.tools') as t")).toEqual([{ t: "tools" }]);
    expect(await schemaSnapshot()).toEqual(before);
    expect(await migrateUp(mdb.orm)).toEqual([]);

    // And the schema works: a scoped insert round-trips.
    const em = mdb.orm.em.fork() as EntityManager;
    scopeToTenant(em, "after-migrations");
    const tool = em.create(Tool, { name: "works", description: "d", parameters: null });
    await em.flush();
    expect(await mdb.sql("select tenant_id from tools where id = ?", [tool.id])).toEqual([{ tenant_id: "after-migrations" }]);
    // Down and up again left the service's connection on its own role.
    expect(await em.execute("select current_user as role")).toEqual([{ role: "agent_platform_app" }]);
  });
});
