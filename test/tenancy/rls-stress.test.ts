import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * Tenants A and B take turns through the real server on a pool of ONE
 * database connection (PGlite has one anyway), so every request of one tenant
 * reuses the connection the other's just left. Many requests fail on purpose
 * and roll back (duplicate names, stale etags, links to the other tenant's
 * tools, the other tenant's ids, deadlines of 1 ms that abort work mid-way).
 * Afterwards no row belongs to the wrong tenant, and each tenant sees exactly
 * its own: a tenant setting that survived its transaction, or a rollback that
 * left one behind, would show as a row in the wrong place or a missing one.
 */

const REQUESTS = 2000;
const CONCURRENCY = 8;
const TENANTS = ["stress-a", "stress-b"] as const;
type Tenant = (typeof TENANTS)[number];

let s: TestServer;
const clients = {} as Record<Tenant, { tools: Client<typeof ToolService>; agents: Client<typeof AgentService> }>;

beforeAll(async () => {
  // Limits out of the way: this is about isolation, not rates or quotas.
  s = await startTestServer({ RATE_LIMIT_PER_SECOND: "0" }, { poolMax: 1 });
  for (const tenant of TENANTS) {
    const transport = connectJson(s.url, await s.token(tenant, ["editor"], `${tenant}-user`));
    clients[tenant] = { tools: clientOf(ToolService, transport), agents: clientOf(AgentService, transport) };
  }
});
afterAll(() => s?.close());

/** A small seeded generator, so a failing run can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("alternating tenants on one pooled connection, with failures and rollbacks", () => {
  it(`keeps ${REQUESTS} requests of two tenants apart`, { timeout: 300_000 }, async () => {
    const seed = Number(process.env.STRESS_SEED ?? 6);
    const next = random(seed);
    /** Tools each tenant certainly has (created, not deleted), with their etags. */
    const live: Record<Tenant, Map<string, { name: string; etag: string }>> = { "stress-a": new Map(), "stress-b": new Map() };
    /** Names whose create may or may not have happened (deadline hit). */
    const maybe: Record<Tenant, Set<string>> = { "stress-a": new Set(), "stress-b": new Set() };
    const outcomes = new Map<string, number>();
    const surprises: string[] = [];
    const count = (what: string) => outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
    const expectCode = async (what: string, call: Promise<unknown>, code: Code) => {
      const err = await errorOf(call).catch((e: Error) => e);
      if ("code" in err && err.code === code) count(what);
      else surprises.push(`${what}: ${"code" in err ? Code[err.code] : err.message}`);
    };

    let issued = 0;
    // Tools an agent links can no longer be deleted; deletes pick others.
    const usedByAgents = new Set<string>();
    const work = async (worker: number) => {
      // Each worker has its own tools per tenant, so its own-tool operations never race another worker's.
      const mine: Record<Tenant, string[]> = { "stress-a": [], "stress-b": [] };
      while (issued < REQUESTS) {
        const i = issued++;
        const tenant = TENANTS[i % 2]!;
        const other = TENANTS[(i + 1) % 2]!;
        const { tools, agents } = clients[tenant];
        const own = mine[tenant].filter((id) => live[tenant].has(id));
        const theirs = [...live[other].keys()];
        const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)];
        const roll = next();
        try {
          if (roll < 0.25 || own.length < 2) {
            const name = `${tenant}-w${worker}-t${i}`;
            const { tool } = await tools.createTool({ tool: { name, description: `${tenant} tool` } });
            live[tenant].set(tool!.id, { name, etag: tool!.etag });
            mine[tenant].push(tool!.id);
            count("create");
          } else if (roll < 0.33) {
            await expectCode("duplicate name", tools.createTool({ tool: { name: live[tenant].get(pick(own)!)!.name, description: "dup" } }), Code.AlreadyExists);
          } else if (roll < 0.41) {
            const id = pick(own)!;
            const { tool } = await tools.updateTool({
              toolId: id,
              tool: { description: `${tenant} updated ${i}` },
              updateMask: { paths: ["description"] },
              etag: live[tenant].get(id)!.etag,
            });
            live[tenant].get(id)!.etag = tool!.etag;
            count("update");
          } else if (roll < 0.47) {
            const id = pick(own)!;
            const stale = `W/"${Math.floor(next() * 1000) + 10_000}"`;
            await expectCode("stale etag", tools.updateTool({ toolId: id, tool: { description: "stale" }, updateMask: { paths: ["description"] }, etag: stale }), Code.Aborted);
          } else if (roll < 0.53) {
            // Renaming onto another own tool's name: refused by the unique index, mid-transaction.
            const from = pick(own)!;
            const target = pick(own.filter((id) => id !== from))!;
            await expectCode(
              "rename onto a taken name",
              tools.updateTool({ toolId: from, tool: { name: live[tenant].get(target)!.name }, updateMask: { paths: ["name"] } }),
              Code.AlreadyExists,
            );
          } else if (roll < 0.58) {
            await expectCode("invalid update", tools.updateTool({ toolId: pick(own)!, tool: { name: "" }, updateMask: { paths: ["name"] } }), Code.InvalidArgument);
          } else if (roll < 0.66 && theirs.length) {
            await expectCode("get the other's tool", tools.getTool({ toolId: pick(theirs)! }), Code.NotFound);
          } else if (roll < 0.70 && theirs.length) {
            await expectCode(
              "update the other's tool",
              tools.updateTool({ toolId: pick(theirs)!, tool: { description: "taken over" }, updateMask: { paths: ["description"] } }),
              Code.NotFound,
            );
          } else if (roll < 0.74 && theirs.length) {
            await expectCode("delete the other's tool", tools.deleteTool({ toolId: pick(theirs)! }), Code.NotFound);
          } else if (roll < 0.80 && theirs.length) {
            // Written inside a transaction that then fails and rolls back.
            await expectCode(
              "agent with the other's tool",
              agents.createAgent({ agent: { name: `${tenant}-w${worker}-x${i}`, role: "r", toolIds: [pick(own)!, pick(theirs)!] }, templateId: "builtin-echo" }),
              Code.PermissionDenied,
            );
          } else if (roll < 0.85) {
            const tool = pick(own)!;
            usedByAgents.add(tool);
            await agents.createAgent({ agent: { name: `${tenant}-w${worker}-a${i}`, role: "r", toolIds: [tool] }, templateId: "builtin-echo" });
            count("agent");
          } else if (roll < 0.88 && own.length > 2) {
            const id = own.find((t) => !usedByAgents.has(t));
            if (id) {
              await tools.deleteTool({ toolId: id });
              live[tenant].delete(id);
              count("delete");
            }
          } else if (roll < 0.94) {
            const { tools: listed } = await tools.listTools({ pageSize: 50 });
            if (listed.some((t) => !t.name.startsWith(`${tenant}-`))) surprises.push(`${tenant} listed another tenant's tool`);
            count("list");
          } else {
            // A deadline of 1 ms: the work is aborted wherever it is, or finishes.
            const name = `${tenant}-w${worker}-d${i}`;
            maybe[tenant].add(name);
            await tools.createTool({ tool: { name, description: `${tenant} tool` } }, { timeoutMs: 1 }).then(
              () => count("deadline met"),
              (err: { code?: Code }) => (err.code === Code.DeadlineExceeded ? count("deadline exceeded") : surprises.push(`deadline: ${String(err)}`)),
            );
          }
        } catch (err) {
          surprises.push(`request ${i} (${tenant}, roll ${roll.toFixed(3)}): ${String(err)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => work(w)));

    expect(surprises, `seed ${seed}`).toEqual([]);
    for (const kind of ["create", "duplicate name", "stale etag", "rename onto a taken name", "agent with the other's tool", "get the other's tool", "list"]) {
      expect([kind, (outcomes.get(kind) ?? 0) > 0]).toEqual([kind, true]);
    }

    // What the database holds, read as the owner past row-level security.
    const rows = await s.db.sql<{ tenant_id: string; name: string; description: string }>("select tenant_id, name, description from tools");
    expect(rows.filter((r) => !r.name.startsWith(`${r.tenant_id}-`) || !r.description.startsWith(r.tenant_id))).toEqual([]);
    const agentRows = await s.db.sql<{ tenant_id: string; name: string }>("select tenant_id, name from agents");
    expect(agentRows.filter((r) => !r.name.startsWith(`${r.tenant_id}-`))).toEqual([]);
    expect(agentRows.filter((r) => r.name.includes("-x"))).toEqual([]);
    const links = await s.db.sql<{ agent: string; tool: string }>(
      "select a.name as agent, t.name as tool from agent_tools l join agents a on a.id = l.agent_id join tools t on t.id = l.tool_id",
    );
    expect(links.filter((l) => l.agent.split("-w")[0] !== l.tool.split("-w")[0])).toEqual([]);

    // And each tenant sees exactly its own: everything it surely has, nothing of the other's.
    for (const tenant of TENANTS) {
      const listed: string[] = [];
      let pageToken = "";
      do {
        const page = await clients[tenant].tools.listTools({ pageSize: 200, pageToken });
        listed.push(...page.tools.map((t) => t.name));
        pageToken = page.nextPageToken;
      } while (pageToken);
      const stored = rows.filter((r) => r.tenant_id === tenant).map((r) => r.name);
      expect(listed.sort()).toEqual(stored.sort());
      const sure = [...live[tenant].values()].map((t) => t.name);
      expect(listed.filter((n) => !sure.includes(n) && !maybe[tenant].has(n))).toEqual([]);
      expect(sure.filter((n) => !listed.includes(n))).toEqual([]);
    }
  });
});
