import type { MikroORM } from "@mikro-orm/core";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { openDatabase } from "../../src/db/orm.ts";
import { clientOf, connectJson, grpc } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import { eventually, internalErrors, serverOver, superuserSession, waitingOnLocks, type FaultServer } from "../support/faults.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * Each tenant's fair share of the database (src/tenants/fair-share-interceptor.ts):
 * a tenant whose calls all wait on the database (here: on a row lock the
 * test holds) occupies at most TENANT_CALLS_IN_FLIGHT connections, and
 * another tenant's calls find the rest of the pool free. Without the share
 * the first tenant's calls would take the whole pool, and the other
 * tenant's calls would wait for a connection until they failed.
 */

const POOL = 4;
const SHARE = 2;

describe.runIf(onPostgres)(`a tenant's calls stuck in the database (DB_POOL_MAX=${POOL}, TENANT_CALLS_IN_FLIGHT=${SHARE})`, () => {
  let s: TestServer;
  let orm: MikroORM;
  let srv: FaultServer;
  let admin: pg.Client;

  beforeAll(async () => {
    s = await startTestServer();
    orm = await openDatabase({ ...s.db.config, poolMax: POOL, acquireTimeoutMs: 3_000 });
    srv = await serverOver(orm, { TENANT_CALLS_IN_FLIGHT: String(SHARE), DB_PROBE_INTERVAL_MS: "0" });
    admin = await superuserSession(s.db.config.url!);
  });
  afterAll(async () => {
    await admin?.end();
    await srv?.close();
    await orm?.close();
    await s?.close();
  });

  it("hold at most their share of the pool; another tenant's calls go through meanwhile", async () => {
    const a = clientOf(ToolService, grpc(srv.url, await srv.token("share-a")));
    const b = clientOf(ToolService, connectJson(srv.url, await srv.token("share-b")));
    const locked = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => (await a.createTool({ tool: { name: `locked-${i}`, description: "d" } })).tool!),
    );
    const bTool = (await b.createTool({ tool: { name: "free", description: "d" } })).tool!;

    await admin.query("begin");
    let stuck: Promise<unknown>[] = [];
    try {
      await admin.query("select * from tools where id = any($1) for update", [locked.map((t) => t.id)]);
      stuck = locked.map((tool) =>
        a.updateTool({ toolId: tool.id, tool: { description: "stuck" }, updateMask: { paths: ["description"] } }, { timeoutMs: 20_000 }),
      );
      await eventually(async () => ((await waitingOnLocks(admin)).length === SHARE ? true : undefined), 5_000, `${SHARE} of A's calls in the database`);

      // B reads and writes while A's twelve calls are stuck…
      expect((await b.getTool({ toolId: bTool.id }, { timeoutMs: 2_000 })).tool?.id).toBe(bTool.id);
      await b.createTool({ tool: { name: "meanwhile", description: "d" } }, { timeoutMs: 2_000 });
      // …and A still holds no more than its share.
      expect(await waitingOnLocks(admin)).toHaveLength(SHARE);
    } finally {
      await admin.query("rollback");
    }
    // Released, A's calls take their turns and all succeed.
    expect((await Promise.allSettled(stuck)).map((r) => r.status)).toEqual(Array(12).fill("fulfilled"));
    expect(internalErrors(srv.logs)).toEqual([]);
  });
});
