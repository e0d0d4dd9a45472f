import { randomUUID } from "node:crypto";
import type { MikroORM } from "@mikro-orm/core";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../../src/auth/tokens.ts";
import { openDatabase } from "../../src/database.ts";
import { clientOf, Code, connectJson, errorOf, grpc } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import { eventually, internalErrors, serverOver, superuserSession, waitingOnLocks, type FaultServer } from "../support/faults.ts";
import { closeRawAgents, envelope, grpcSession } from "../support/raw-wire.ts";
import { startTestServer, TEST_SECRET, type TestServer } from "../support/server.ts";

/*
 * Each tenant's fair share of the database (src/pipeline/admission/lines.ts):
 * a tenant alone may borrow every connection but one beyond its
 * TENANT_CALLS_IN_FLIGHT (the share is work-conserving), so a tenant whose
 * calls all wait on the database (here: on a row lock the test holds)
 * occupies at most all but one connection, and another tenant's calls find
 * that one free. Without the lines the first tenant's calls would take the
 * whole pool, and the other tenant's calls would wait for a connection
 * until they failed.
 */

const POOL = 4;
const SHARE = 2;
// What a tenant alone may hold: its share, and what it borrows up to all connections but one.
const ALONE = POOL - 1;

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

  // Whether A's calls were admitted before they were read (a token the
  // server verified a moment ago: the share is taken unread) or after
  // authentication (a token it has not seen: the share is taken right
  // before the database work).
  it.each([
    { path: "admitted before they are read", fresh: false },
    { path: "admitted after authentication", fresh: true },
  ])("hold all the pool but one connection when $path; another tenant's calls go through meanwhile", async ({ fresh }) => {
    const tenantA = `share-a-${fresh ? "fresh" : "known"}`;
    const a = clientOf(ToolService, grpc(srv.url, await srv.token(tenantA)));
    const b = clientOf(ToolService, connectJson(srv.url, await srv.token(`share-b-${fresh ? "fresh" : "known"}`)));
    const locked = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => (await a.createTool({ tool: { name: `locked-${i}`, description: "d" } })).tool!),
    );
    const bTool = (await b.createTool({ tool: { name: "free", description: "d" } })).tool!;

    await admin.query("begin");
    let stuck: Promise<unknown>[] = [];
    try {
      await admin.query("select * from tools where id = any($1) for update", [locked.map((t) => t.id)]);
      // A token with another subject: a string the server has never verified.
      const freshToken = () =>
        mintToken(new TextEncoder().encode(TEST_SECRET), { tenants: [tenantA], roles: ["editor"], subject: randomUUID(), ttl: "10m" });
      const aNow = fresh ? clientOf(ToolService, grpc(srv.url, await freshToken())) : a;
      stuck = locked.map((tool) =>
        aNow.updateTool({ toolId: tool.id, tool: { description: "stuck" }, updateMask: { paths: ["description"] } }, { timeoutMs: 20_000 }),
      );
      await eventually(async () => ((await waitingOnLocks(admin)).length === ALONE ? true : undefined), 5_000, `${ALONE} of A's calls in the database`);

      // One more call of A waits in A's line; past its deadline it is answered so.
      const started = Date.now();
      const late = await errorOf(aNow.getTool({ toolId: locked[0]!.id }, { timeoutMs: 500 }));
      expect(Code[late.code]).toBe(Code[Code.DeadlineExceeded]);
      expect(Date.now() - started).toBeLessThan(3_000);

      // B reads and writes while A's twelve calls are stuck…
      expect((await b.getTool({ toolId: bTool.id }, { timeoutMs: 2_000 })).tool?.id).toBe(bTool.id);
      await b.createTool({ tool: { name: "meanwhile", description: "d" } }, { timeoutMs: 2_000 });
      // …and A still holds no more than it did alone.
      expect(await waitingOnLocks(admin)).toHaveLength(ALONE);
    } finally {
      await admin.query("rollback");
    }
    // Released, A's calls take their turns and all succeed.
    expect((await Promise.allSettled(stuck)).map((r) => r.status)).toEqual(Array(12).fill("fulfilled"));
    expect(internalErrors(srv.logs)).toEqual([]);
  });
});

describe("a tenant's share after an answer sent before the request ended (TENANT_CALLS_IN_FLIGHT=1)", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ TENANT_CALLS_IN_FLIGHT: "1", MAX_MESSAGE_BYTES: String(64 * 1024) });
  });
  afterAll(() => s?.close());

  it("is given back with the answer, though the client keeps its HTTP/2 stream open", async () => {
    const token = await s.token("share-open-stream");
    const tools = clientOf(ToolService, grpc(s.url, token));
    await tools.listTools({}); // the token is known: the next calls are admitted before they are read
    const raw = grpcSession(s.url);
    try {
      // Too large: refused after its envelope's header, while the client is
      // still sending a body the server will never read.
      const answer = await raw.call("/agentplatform.v1.ToolService/ListTools", envelope(new Uint8Array(1024 * 1024)), {
        authorization: `Bearer ${token}`,
      });
      expect(answer.code).toBe("resource_exhausted");
      // The tenant's one share is free again.
      await tools.listTools({}, { timeoutMs: 2_000 });
    } finally {
      raw.close();
      closeRawAgents();
    }
  });
});
