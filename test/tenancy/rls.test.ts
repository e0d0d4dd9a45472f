import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { purgeExpiredAgents } from "../../src/agents/purge-job.ts";
import { migrateUp, openDatabase } from "../../src/database.ts";
import { APP_ROLE, assertRuntimeRole } from "../../src/db/rls.ts";
import { scopeToTenant } from "../../src/db/tenant.ts";
import { failOrphans } from "../../src/executions/orphans.ts";
import { applyRetention } from "../../src/executions/retention.ts";
import { Tool } from "../../src/tools/tool.entity.ts";
import { clientOf, connectJson } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * Row-level security under the ORM filter (src/db/rls.ts). Tenants A and B
 * each fill every tenant-owned table through the real server; then queries
 * scoped to A that the ORM filter does not guard (raw SQL, QueryBuilder
 * without applyFilters, `filters: false`, which only tests may use) must
 * neither see nor write a row of B, and a connection with no tenant set sees
 * and writes nothing. The same holds on PGlite, whose one connection runs as
 * the same non-superuser role; only the system jobs under a non-superuser
 * owner need PostgreSQL (PGlite's owner is its superuser).
 */

const A = "rls-a";
const B = "rls-b";
const policyViolation = /row-level security/;

let s: TestServer;

/** A fork scoped to `tenant`, as a request of that tenant gets. */
function scoped(tenant: string, orm: MikroORM = s.orm): EntityManager {
  const em = orm.em.fork() as EntityManager;
  scopeToTenant(em, tenant);
  return em;
}

/** Every table with a tenant_id column, as the catalog lists them. */
async function tenantTables(): Promise<string[]> {
  const rows = await s.db.sql<{ table_name: string }>(
    `select table_name from information_schema.columns
      where table_schema = 'public' and column_name = 'tenant_id' order by table_name`,
  );
  return rows.map((r) => r.table_name);
}

async function countOf(table: string, tenant: string): Promise<number> {
  const [row] = await s.db.sql<{ n: number }>(`select count(*)::int as n from ${table} where tenant_id = ?`, [tenant]);
  return row!.n;
}

async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Fills every table of `tenant` through the service, as its admin. */
async function seed(tenant: string): Promise<void> {
  const transport = connectJson(s.url, await s.token(tenant, ["admin"], `${tenant}-admin`));
  const tools = clientOf(ToolService, transport);
  const agents = clientOf(AgentService, transport);
  const credentials = clientOf(CredentialService, transport);
  const executions = clientOf(ExecutionService, transport);
  const tool = (await tools.createTool({ tool: { name: `${tenant}-tool`, description: "d" } })).tool!;
  await agents.createAgentTemplate({ template: { name: `${tenant}-template`, agentType: AgentType.N8N } });
  const credential = (
    await credentials.createCredential({
      credential: { name: `${tenant}-credential`, type: CredentialType.BEARER_TOKEN },
      secret: { value: { case: "bearerToken", value: { token: `t-${tenant}` } } },
      requestId: randomUUID(),
    })
  ).credential!;
  const agent = (
    await agents.createAgent({ agent: { name: `${tenant}-agent`, role: "echo", toolIds: [tool.id] }, templateId: "builtin-echo" })
  ).agent!;
  await agents.bindCredentials({ agentId: agent.id, credentialIds: [credential.id] });
  const parent = (await executions.executeAgent({ input: { agentId: agent.id, prompt: "hello" } })).execution!;
  await executions.executeAgent({ input: { agentId: agent.id, prompt: "child", parentExecutionId: parent.id } });
  await executions.updateExecutionRetention({ retentionDays: 30 });
  await executions.purgeExecutions({ olderThan: timestampFromDate(new Date("2000-01-01T00:00:00Z")) });
  await eventually(async () => (await countOf("execution_events", tenant)) > 0, 10_000, `${tenant}'s execution events`);
}

beforeAll(async () => {
  s = await startTestServer();
  await seed(A);
  await seed(B);
});
afterAll(() => s?.close());

// The tables every seed fills (tables of later features may be empty here).
const SEEDED = [
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

describe("the seed", () => {
  it("gives both tenants rows in every tenant-owned table of the service", async () => {
    const tables = await tenantTables();
    expect(tables).toEqual(expect.arrayContaining(SEEDED));
    for (const table of SEEDED) {
      expect([table, await countOf(table, A)]).not.toEqual([table, 0]);
      expect([table, await countOf(table, B)]).not.toEqual([table, 0]);
    }
  });
});

describe("a transaction scoped to A, past the ORM filter", () => {
  it("reads none of B's rows with raw SQL, in any table", async () => {
    const em = scoped(A);
    for (const table of await tenantTables()) {
      const rows = await em.execute<{ tenant_id: string }[]>(`select distinct tenant_id from ${table}`);
      expect([table, rows.map((r) => r.tenant_id)]).toEqual([table, (await countOf(table, A)) > 0 ? [A] : []]);
    }
  });

  it("updates and deletes none of B's rows with raw SQL, in any table", async () => {
    const em = scoped(A);
    for (const table of await tenantTables()) {
      const before = await countOf(table, B);
      const updated = await em.execute<{ affectedRows: number }>(`update ${table} set tenant_id = tenant_id where tenant_id = ?`, [B], "run");
      const deleted = await em.execute<{ affectedRows: number }>(`delete from ${table} where tenant_id = ?`, [B], "run");
      expect([table, updated.affectedRows, deleted.affectedRows]).toEqual([table, 0, 0]);
      expect([table, await countOf(table, B)]).toEqual([table, before]);
    }
  });

  it("can neither move A's row into B nor write a copy of it as B's (WITH CHECK), in any table", async () => {
    const em = scoped(A);
    for (const table of await tenantTables()) {
      if ((await countOf(table, A)) === 0) continue;
      const rowOfA = `(select to_jsonb(t) from ${table} t where t.tenant_id = '${A}' limit 1)`;
      await expect(em.execute(`update ${table} set tenant_id = ? where tenant_id = ?`, [B, A]), table).rejects.toThrow(policyViolation);
      await expect(
        em.execute(`insert into ${table} select * from jsonb_populate_record(null::${table}, ${rowOfA} || jsonb_build_object('tenant_id', ?::text))`, [B]),
        table,
      ).rejects.toThrow(policyViolation);
    }
  });

  it("sees only A's rows through a QueryBuilder without applyFilters and through find with filters: false", async () => {
    const em = scoped(A);
    const entities = [...s.orm.getMetadata().getAll().values()].filter((m) => m.properties.tenantId && !m.abstract && !m.virtual);
    expect(entities.length).toBeGreaterThanOrEqual(SEEDED.length);
    for (const meta of entities) {
      const built = await em.createQueryBuilder(meta.class).select("*").getResultList();
      const found = await em.find(meta.class, {}, { filters: false });
      const tenants = (rows: object[]) => [...new Set(rows.map((r) => (r as { tenantId: string }).tenantId))];
      const onlyA = (await countOf(meta.tableName, A)) > 0 ? [A] : [];
      expect([meta.className, tenants(built), tenants(found)]).toEqual([meta.className, onlyA, onlyA]);
    }
  });

  it("changes none of B's rows through QueryBuilder and nativeUpdate with filters off", async () => {
    const em = scoped(A);
    const [bTool] = await s.db.sql<{ id: string; description: string }>("select id, description from tools where tenant_id = ?", [B]);
    const qb = await em.createQueryBuilder(Tool).update({ description: "by A" }).where({ id: bTool!.id }).execute("run");
    expect(qb.affectedRows).toBe(0);
    expect(await em.nativeUpdate(Tool, { id: bTool!.id }, { description: "by A" }, { filters: false })).toBe(0);
    expect(await em.nativeDelete(Tool, { id: bTool!.id }, { filters: false })).toBe(0);
    expect(await s.db.sql("select description from tools where id = ?", [bTool!.id])).toEqual([{ description: bTool!.description }]);
  });

  it("uses the tenant_id index, with the tenant setting evaluated once per query", async () => {
    const plan = await scoped(A).transactional(async (tx) => {
      // A table this small would be scanned whole; the plan must show the index can serve it.
      await tx.execute("set local enable_seqscan = off");
      const rows = await tx.execute<{ "QUERY PLAN": string }[]>("explain select id, name from agents");
      return rows.map((r) => r["QUERY PLAN"]).join("\n");
    });
    expect(plan).toMatch(/(Index Scan|Index Only Scan|Bitmap Index Scan) (using|on) agents_tenant_id\w*/);
    // The InitPlan's result: `$0` on PostgreSQL 15, `(InitPlan 1).col1` on PGlite (PostgreSQL 18).
    expect(plan).toMatch(/Index Cond: \(tenant_id = (\$0|\(InitPlan 1\)\.col1)\)/);
    // One InitPlan: the setting is read once for the query, not per row.
    expect(plan.split("\n").filter((line) => /^\s*InitPlan \d/.test(line))).toHaveLength(1);
  });
});

describe("a connection without a tenant", () => {
  it("sees no row of any table and writes none", async () => {
    const connection = (s.orm.em.fork() as EntityManager).getConnection();
    for (const table of await tenantTables()) {
      const [row] = await connection.execute<{ n: number }[]>(`select count(*)::int as n from ${table}`);
      expect([table, row!.n]).toEqual([table, 0]);
      if ((await countOf(table, A)) === 0) continue;
      const rowOfA = `(select to_jsonb(t) from ${table} t where t.tenant_id = '${A}' limit 1)`;
      const copy = await s.db.sql<{ row: object }>(`select ${rowOfA} as row`);
      await expect(
        connection.execute(`insert into ${table} select * from jsonb_populate_record(null::${table}, ?::jsonb)`, [JSON.stringify(copy[0]!.row)]),
        table,
      ).rejects.toThrow(policyViolation);
    }
  });

  it("sees nothing on a fork without a tenant, through em.execute and a QueryBuilder", async () => {
    const em = s.orm.em.fork() as EntityManager;
    expect(await em.execute("select id from tools")).toEqual([]);
    expect(await em.createQueryBuilder(Tool).select("*").getResultList()).toEqual([]);
  });

  it("is what a pooled connection is after a tenant's transaction: the setting ends with the transaction", async () => {
    // One connection, used by A's query and then by one without a tenant.
    const orm = onPostgres ? await openDatabase({ ...s.db.config, poolMax: 1 }) : s.orm;
    try {
      const em = scoped(A, orm);
      expect((await em.execute("select distinct tenant_id from tools")).length).toBe(1);
      const bare = (orm.em.fork() as EntityManager).getConnection();
      const [after] = await bare.execute<{ setting: string | null; pid: number }[]>(
        "select current_setting('app.tenant_id', true) as setting, pg_backend_pid() as pid",
      );
      expect(after!.setting ?? "").toBe("");
      expect(await bare.execute("select id from tools")).toEqual([]);
    } finally {
      if (orm !== s.orm) await orm.close();
    }
  });
});

describe("the service's database role", () => {
  it("is agent_platform_app, which row-level security holds", async () => {
    expect(await (s.orm.em.fork() as EntityManager).execute("select current_user as role")).toEqual([{ role: APP_ROLE }]);
    await expect(assertRuntimeRole(s.orm)).resolves.toBeUndefined();
  });
});

// PGlite's owner is its superuser, to whom RLS does not apply; a production
// owner usually is neither superuser nor BYPASSRLS, and FORCE holds it too.
describe.runIf(onPostgres)("system jobs when the owner is neither superuser nor BYPASSRLS", () => {
  const owner = `agent_platform_test_owner_${process.pid}`;
  const database = `agent_platform_test_owned_${process.env.VITEST_POOL_ID ?? "0"}_${process.pid}`;
  let orm: MikroORM;
  let ownerUrl: string;

  async function admin(statements: string[]): Promise<void> {
    const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await client.connect();
    try {
      for (const sql of statements) await client.query(sql);
    } finally {
      await client.end();
    }
  }

  beforeAll(async () => {
    await admin([
      `drop database if exists ${database} with (force)`,
      `drop role if exists ${owner}`,
      `create role ${owner} login nosuperuser nobypassrls nocreaterole`,
      `create database ${database} owner ${owner}`,
    ]);
    const url = new URL(process.env.TEST_DATABASE_URL!);
    url.pathname = `/${database}`;
    url.username = owner;
    ownerUrl = url.toString();
    orm = await openDatabase({ url: ownerUrl, dataDir: "", poolMax: 4 });
    // agent_platform_app exists already (the server above), so an owner without CREATEROLE migrates.
    await migrateUp(orm);
  });
  afterAll(async () => {
    await orm?.close();
    await admin([`drop database if exists ${database} with (force)`, `drop role if exists ${owner}`]);
  });

  it("purge, retention and the orphan sweep find their tenants and work on them", async () => {
    const old = new Date("2020-01-01T00:00:00Z");
    for (const tenant of ["owned-x", "owned-y"]) {
      const em = scoped(tenant, orm);
      const agentId = randomUUID();
      await em.execute(
        `insert into agents (id, tenant_id, name, role, description, agent_type, state, visibility, creator, create_time, update_time, delete_time, purge_time)
         values (?, ?, 'gone', 'r', '', 'N8N', 'DELETED', 'PRIVATE', 'c', ?, ?, ?, ?)`,
        [agentId, tenant, old, old, old, old],
      );
      const liveAgent = randomUUID();
      await em.execute(
        `insert into agents (id, tenant_id, name, role, description, agent_type, state, visibility, creator, create_time, update_time)
         values (?, ?, 'live', 'r', '', 'N8N', 'ACTIVE', 'PRIVATE', 'c', now(), now())`,
        [liveAgent, tenant],
      );
      for (const [status, created] of [["SUCCEEDED", old], ["RUNNING", new Date()]] as const) {
        await em.execute(
          `insert into executions (id, tenant_id, agent_id, agent_version, session_id, status, prompt, model, response, input_tokens,
             output_tokens, cost_micros, error_code, error_message, error_detail, request_hash, creator, test_model, instance_id, create_time)
           values (?, ?, ?, 1, '', ?, 'p', 'm', '', 0, 0, 0, '', '', '', '', 'c', true, 'dead-instance', ?)`,
          [randomUUID(), tenant, liveAgent, status, created],
        );
      }
    }
    // The owner itself reads nothing without a tenant: FORCE holds it too.
    const ownerOnly = await openDatabase({ url: ownerUrl, dataDir: "", poolMax: 1, rowLevelSecurity: false });
    try {
      expect(await (ownerOnly.em.fork() as EntityManager).execute("select count(*)::int as n from agents")).toEqual([{ n: 0 }]);
      await expect(assertRuntimeRole(ownerOnly)).rejects.toThrow(/refusing to serve/);
    } finally {
      await ownerOnly.close();
    }

    expect(await purgeExpiredAgents(orm)).toBe(2);
    expect(await applyRetention(orm)).toBe(2);
    expect(await failOrphans(orm, { instanceId: "dead-instance", staleMs: 60_000 })).toBe(2);
    for (const tenant of ["owned-x", "owned-y"]) {
      const em = scoped(tenant, orm);
      expect(await em.execute("select name from agents")).toEqual([{ name: "live" }]);
      expect(await em.execute("select status from executions")).toEqual([{ status: "FAILED" }]);
    }
  });
});
