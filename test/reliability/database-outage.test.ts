import { randomUUID } from "node:crypto";
import type { ConnectError } from "@connectrpc/connect";
import type { MikroORM } from "@mikro-orm/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { migrateUp, openDatabase } from "../../src/database.ts";
import { clientOf, Code, connectJson } from "../support/clients.ts";
import { onPostgres } from "../support/db.ts";
import {
  eventually,
  internalErrors,
  serverOver,
  startPrivateCluster,
  superuser,
  type FaultServer,
  type PrivateCluster,
} from "../support/faults.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * PostgreSQL going away under traffic: stopped (a private cluster this file
 * owns; the shared server is never stopped), or its connections killed with
 * pg_terminate_backend (only this file's own database's). Calls fail fast
 * with UNAVAILABLE, never INTERNAL and never hanging; health follows the
 * database; the service recovers by itself; retries with a request_id
 * never duplicate.
 */

/** How a call ended: its code (0 for OK) and how long it took. */
type Outcome = { code: Code | 0; ms: number };
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `call` in `workers` loops until `until` resolves; the outcome of every call. */
async function traffic(workers: number, until: Promise<unknown>, call: (worker: number, i: number) => Promise<unknown>): Promise<Outcome[]> {
  let done = false;
  void until.finally(() => (done = true));
  const outcomes: Outcome[] = [];
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      for (let i = 0; !done; i++) {
        const started = Date.now();
        try {
          await call(worker, i);
          outcomes.push({ code: 0, ms: Date.now() - started });
        } catch (err) {
          outcomes.push({ code: (err as { code: Code }).code, ms: Date.now() - started });
          // Do not spin while the database is down.
          await sleep(20);
        }
      }
    }),
  );
  return outcomes;
}


describe("PostgreSQL stopped and started again", () => {
  let cluster: PrivateCluster | string;
  let orm: MikroORM | undefined;
  let srv: FaultServer | undefined;
  const DEADLINE_MS = 2000;

  beforeAll(async () => {
    if (!onPostgres) return;
    cluster = await startPrivateCluster();
    if (typeof cluster === "string") return;
    await superuser(cluster.url(), ["create database app"]);
    orm = await openDatabase({ url: cluster.url("app"), dataDir: "", poolMax: 5, acquireTimeoutMs: 1000 });
    await migrateUp(orm);
    srv = await serverOver(orm, {
      DATABASE_URL: cluster.url("app"),
      DB_PROBE_INTERVAL_MS: "200",
      DB_PROBE_TIMEOUT_MS: "500",
    });
  }, 60_000);

  afterAll(async () => {
    try {
      await srv?.close();
      await orm?.close().catch(() => undefined);
    } finally {
      // Whatever happened above, the throwaway cluster does not outlive the file.
      if (typeof cluster === "object") await cluster.destroy();
    }
  }, 60_000);

  it.runIf(onPostgres)(
    "fails calls with UNAVAILABLE within their deadline, turns NOT_SERVING, and serves again without a restart once it is back",
    async (ctx) => {
      if (typeof cluster === "string") return ctx.skip(cluster);
      const tools = clientOf(ToolService, connectJson(srv!.url, await srv!.token("outage")));
      const health = clientOf(Health, connectJson(srv!.url));
      const { tool } = await tools.createTool({ tool: { name: "before-the-outage", description: "d" } });

      const watching = new AbortController();
      const seen: Status[] = [];
      const watch = (async () => {
        for await (const res of health.watch({ service: "" }, { signal: watching.signal })) seen.push(res.status);
      })().catch(() => undefined);

      // Reads and writes in flight while the database stops.
      const stopped = sleep(400).then(() => (cluster as PrivateCluster).stop());
      const during = await traffic(4, stopped.then(() => sleep(1500)), (w, i) =>
        i % 3 === 0
          ? tools.createTool({ tool: { name: `during-${w}-${i}`, description: "d" } }, { timeoutMs: DEADLINE_MS })
          : i % 3 === 1
            ? tools.getTool({ toolId: tool!.id }, { timeoutMs: DEADLINE_MS })
            : tools.listTools({}, { timeoutMs: DEADLINE_MS }),
      );
      expect(during.some((o) => o.code === Code.Unavailable)).toBe(true);
      expect(during.filter((o) => o.code !== 0 && o.code !== Code.Unavailable)).toEqual([]);
      expect(Math.max(...during.map((o) => o.ms))).toBeLessThan(DEADLINE_MS);

      // Down: each call is refused fast and says why, without SQL.
      const started = Date.now();
      const refused = await tools.getTool({ toolId: tool!.id }, { timeoutMs: DEADLINE_MS }).then(
        () => undefined,
        (err: unknown) => err as ConnectError,
      );
      expect(refused?.code).toBe(Code.Unavailable);
      expect(refused?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("DATABASE_UNAVAILABLE");
      expect(refused?.rawMessage).toBe("the database is unavailable; retry later");
      expect(Date.now() - started).toBeLessThan(1000);
      await eventually(async () => ((await health.check({ service: "" })).status === Status.NOT_SERVING ? true : undefined), 3000, "NOT_SERVING");

      await (cluster as PrivateCluster).start();
      await eventually(async () => ((await health.check({ service: "" })).status === Status.SERVING ? true : undefined), 5000, "SERVING again");
      const { tool: read } = await tools.getTool({ toolId: tool!.id });
      expect(read).toEqual(tool);
      const { tool: created } = await tools.createTool({ tool: { name: "after-the-outage", description: "d" } });
      expect(created?.id).toBeTruthy();

      watching.abort();
      await watch;
      // The watcher saw it: serving, not serving, serving again.
      expect(seen.filter((s, i) => s !== seen[i - 1])).toEqual([Status.SERVING, Status.NOT_SERVING, Status.SERVING]);
      expect(internalErrors(srv!.logs)).toEqual([]);
    },
    30_000,
  );
});

describe("connections killed with pg_terminate_backend mid-traffic", () => {
  let s: TestServer;

  beforeAll(async () => {
    if (onPostgres) s = await startTestServer();
  });
  afterAll(() => s?.close());

  it.runIf(onPostgres)(
    "fails the calls they carried with UNAVAILABLE, keeps serving, and retried creates never duplicate",
    async () => {
      const tools = clientOf(ToolService, connectJson(s.url, await s.token("terminate")));
      const creates = new Map<string, { requestId: string; id?: string }>();
      let kills = 0;
      const storm = (async () => {
        for (let round = 0; round < 10; round++) {
          await sleep(120);
          const [row] = await s.db.sql<{ n: number }>(
            `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
              where datname = current_database() and pid <> pg_backend_pid() and usename <> current_user`,
          );
          kills += row?.n ?? 0;
        }
      })();
      // Traffic goes on for a moment after the last kill: a round of three
      // calls takes about as long as the 120 ms between kills (each call opens
      // a new connection once the pool's were killed), so during the storm
      // alone a success is luck; after it, every worker must be served again.
      const outcomes = await traffic(4, storm.then(() => sleep(600)), async (w, i) => {
        const name = `t-${w}-${i}`;
        const requestId = randomUUID();
        creates.set(name, { requestId });
        const { tool } = await tools.createTool({ tool: { name, description: "d" }, requestId }, { timeoutMs: 3000 });
        creates.get(name)!.id = tool!.id;
        await tools.getTool({ toolId: tool!.id }, { timeoutMs: 3000 });
        await tools.listTools({ namePrefix: `t-${w}-` }, { timeoutMs: 3000 });
      });
      expect(kills).toBeGreaterThan(0);
      expect(outcomes.filter((o) => o.code !== 0 && o.code !== Code.Unavailable)).toEqual([]);
      expect(outcomes.some((o) => o.code === 0)).toBe(true);

      // No connection was lost with the killed ones: more calls at once than the pool has connections all succeed.
      const burst = await Promise.allSettled(Array.from({ length: 25 }, () => tools.listTools({ pageSize: 5 }, { timeoutMs: 3000 })));
      expect(burst.filter((r) => r.status === "rejected")).toEqual([]);
      const stuck = await s.db.sql(
        `select pid, state from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'`,
      );
      expect(stuck).toEqual([]);

      // Every create is retried with its request_id: the first answer, or the one create it made.
      for (const [name, create] of creates) {
        const { tool } = await tools.createTool({ tool: { name, description: "d" }, requestId: create.requestId });
        if (create.id) expect(tool?.id).toBe(create.id);
        const { tools: listed } = await tools.listTools({ namePrefix: name, pageSize: 200 });
        expect(listed.filter((t) => t.name === name).map((t) => t.id)).toEqual([tool!.id]);
      }
      expect(internalErrors(s.logs)).toEqual([]);
    },
    30_000,
  );
});
