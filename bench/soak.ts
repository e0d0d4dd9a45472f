// Soak: a bounded load of mixed reads, writes and executions (echo model)
// from several tenants against a real server process on loopback. Not a
// test: it runs for minutes and stops by itself. It reports unexpected errors
// (must be 0), the server's RSS every few seconds and its trend, and, on
// PostgreSQL, the server's connections at the end (none idle in a
// transaction while it runs, none left once it stopped).
//   npm run soak                                   # embedded PGlite, 3 minutes
//   SOAK_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run soak
//   SOAK_SECONDS=60 SOAK_TENANTS=4 SOAK_WORKERS=16 SOAK_SAMPLE_MS=5000 …
// With SOAK_DATABASE_URL a fresh database is created on that server (as that
// user, who must be able to create databases and roles) and dropped at the end.
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { AgentService } from "../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../gen/agentplatform/v1/credential_service_pb.js";
import { ExecutionStatus } from "../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService } from "../gen/agentplatform/v1/execution_service_pb.js";
import { ToolService } from "../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../src/auth/tokens.ts";
import { startBenchServer } from "./server-process.ts";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 180);
const TENANTS = Number(process.env.SOAK_TENANTS ?? 4);
const WORKERS = Number(process.env.SOAK_WORKERS ?? 16);
const SAMPLE_MS = Number(process.env.SOAK_SAMPLE_MS ?? 5000);
const POOL = 10;
const SECRET = "soak-secret-0123456789abcdef0123456789abcdef";
const adminUrl = process.env.SOAK_DATABASE_URL;

// ------------------------------------------------------------- database --
const dbName = `agent_platform_soak_${process.pid}`;
const dataDir = mkdtempSync(join(tmpdir(), "agent-platform-soak-"));
let databaseUrl: string | undefined;
async function admin<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}
if (adminUrl) {
  await admin(adminUrl, `drop database if exists ${dbName} with (force)`);
  await admin(adminUrl, `create database ${dbName}`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  databaseUrl = url.toString();
}

// --------------------------------------------------------------- server --
// Its stdout (the structured log) is shown; stderr is kept for a failure.
const server = await startBenchServer(
  {
    JWT_SECRET: SECRET,
    DATA_DIR: dataDir,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    DB_POOL_MAX: String(POOL),
    // The tenant rate limit is not what this measures (bench/fairness.ts does).
    RATE_LIMIT_PER_SECOND: "0",
    LOG_LEVEL: "warn",
  },
  { stdout: "inherit" },
);
const child = server.child;
const baseUrl = server.url;

/** Resident set size of the server process, in MiB (Linux /proc; else ps). */
function rssMiB(): number {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1]);
    return kb / 1024;
  } catch {
    return NaN;
  }
}

// ----------------------------------------------------------------- load --
interface Clients {
  tools: Client<typeof ToolService>;
  agents: Client<typeof AgentService>;
  executions: Client<typeof ExecutionService>;
  credentials: Client<typeof CredentialService>;
}
const tenants = await Promise.all(
  Array.from({ length: TENANTS }, async (_, t) => {
    const token = await mintToken(new TextEncoder().encode(SECRET), { tenants: [`soak-${t}`], roles: ["admin"], subject: "soak", ttl: "2h" });
    const auth: Interceptor[] = [
      (next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      },
    ];
    // Half the tenants speak gRPC over HTTP/2, half Connect JSON over HTTP/1.1.
    const transport: Transport =
      t % 2 === 0
        ? createGrpcTransport({ baseUrl, interceptors: auth })
        : createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors: auth });
    const clients: Clients = {
      tools: createClient(ToolService, transport),
      agents: createClient(AgentService, transport),
      executions: createClient(ExecutionService, transport),
      credentials: createClient(CredentialService, transport),
    };
    const { agent } = await clients.agents.createAgent({ agent: { name: "echo", role: "soak" }, templateId: "builtin-echo" });
    return { clients, agentId: agent!.id };
  }),
);

const counts = new Map<string, number>();
const errors = new Map<string, number>();
let calls = 0;
let stopping = false;
const deadline = Date.now() + SECONDS * 1000;

async function op(name: string, call: () => Promise<unknown>): Promise<void> {
  calls++;
  counts.set(name, (counts.get(name) ?? 0) + 1);
  try {
    await call();
  } catch (err) {
    const key = `${name}: ${(err as Error).message.slice(0, 160)}`;
    errors.set(key, (errors.get(key) ?? 0) + 1);
  }
}

async function worker(w: number): Promise<void> {
  const { clients, agentId } = tenants[w % TENANTS]!;
  const { tools, agents, executions, credentials } = clients;
  const mine: { id: string; etag: string }[] = [];
  for (let i = 0; Date.now() < deadline && !stopping; i++) {
    const r = (i * 7 + w) % 20;
    if (r < 4) {
      await op("CreateTool", async () => {
        const { tool } = await tools.createTool({ tool: { name: `w${w}-${i}`, description: "soak", parameters: { type: "object" } }, requestId: randomUUID() });
        mine.push({ id: tool!.id, etag: tool!.etag });
      });
    } else if (r < 6 && mine.length) {
      const t = mine[mine.length - 1]!;
      await op("UpdateTool", async () => {
        const { tool } = await tools.updateTool({ toolId: t.id, tool: { description: `v${i}` }, updateMask: { paths: ["description"] }, etag: t.etag });
        t.etag = tool!.etag;
      });
    } else if (r < 7 && mine.length > 5) {
      const t = mine.shift()!;
      await op("DeleteTool", () => tools.deleteTool({ toolId: t.id, etag: t.etag }));
    } else if (r < 10) {
      await op("ListTools", () => tools.listTools({ pageSize: 50 }));
      if (mine.length) await op("GetTool", () => tools.getTool({ toolId: mine[mine.length - 1]!.id }));
    } else if (r < 11) {
      await op("CreateAgent+UpdateAgent", async () => {
        const { agent } = await agents.createAgent({ agent: { name: `a-w${w}-${i}`, role: "soak" }, templateId: "builtin-echo" });
        await agents.updateAgent({ agentId: agent!.id, agent: { config: { model: "echo", n: i } }, updateMask: { paths: ["config"] }, etag: agent!.etag });
      });
    } else if (r < 12) {
      await op("ListAgents", () => agents.listAgents({ pageSize: 50 }));
    } else if (r < 15) {
      await op("ExecuteAgent", async () => {
        const { execution } = await executions.executeAgent({ input: { agentId, prompt: `hello ${i}`, requestId: randomUUID() } });
        if (execution?.status !== ExecutionStatus.SUCCEEDED) throw new Error(`execution ended ${ExecutionStatus[execution?.status ?? 0]}`);
      });
    } else if (r < 17) {
      await op("StreamExecuteAgent", async () => {
        let last: string | undefined;
        for await (const res of executions.streamExecuteAgent({ input: { agentId, prompt: `stream ${i}` } })) last = res.event?.event.case;
        if (last !== "completed") throw new Error(`stream ended after ${last}`);
      });
    } else if (r < 18) {
      await op("ListExecutions+GetExecution", async () => {
        const { executions: page } = await executions.listExecutions({ pageSize: 20 });
        if (page[0]) await executions.getExecution({ executionId: page[0].id });
      });
    } else if (r < 19) {
      await op("CreateCredential+GetCredential", async () => {
        const { credential } = await credentials.createCredential({
          credential: { name: `c-w${w}-${i}`, type: CredentialType.API_KEY },
          secret: { value: { case: "apiKey", value: { apiKey: `key-${randomUUID()}`, headerName: "" } } },
        });
        await credentials.getCredential({ credentialId: credential!.id });
      });
    } else {
      await op("GetExecutionStats", () =>
        executions.getExecutionStats({ startTime: { seconds: BigInt(Math.floor(Date.now() / 1000) - 3600), nanos: 0 }, endTime: { seconds: BigInt(Math.floor(Date.now() / 1000) + 60), nanos: 0 } }),
      );
    }
  }
}

// ------------------------------------------------------------- sampling --
const samples: { t: number; rss: number; calls: number }[] = [];
const t0 = Date.now();
const sample = () => samples.push({ t: (Date.now() - t0) / 1000, rss: rssMiB(), calls });
sample();
console.log(`soak: ${SECONDS} s, ${TENANTS} tenants, ${WORKERS} workers, ${databaseUrl ? "PostgreSQL" : "PGlite"}, server pid ${child.pid}`);
const sampler = setInterval(() => {
  const prev = samples.at(-1)!;
  sample();
  const cur = samples.at(-1)!;
  const errorCount = [...errors.values()].reduce((a, b) => a + b, 0);
  console.log(
    `t=${cur.t.toFixed(0).padStart(4)} s  rss ${cur.rss.toFixed(1)} MiB  ${Math.round((cur.calls - prev.calls) / (cur.t - prev.t))} calls/s  total ${cur.calls}  errors ${errorCount}`,
  );
}, SAMPLE_MS);

process.on("SIGINT", () => (stopping = true));
await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
clearInterval(sampler);
sample();

// --------------------------------------------------------------- verdict --
let connectionsWhileIdle: { state: string; n: number }[] = [];
let connectionsAfterExit: number | undefined;
if (adminUrl) {
  await new Promise((r) => setTimeout(r, 1000));
  connectionsWhileIdle = await admin<{ state: string; n: number }>(
    adminUrl,
    `select coalesce(state, '?') as state, count(*)::int as n from pg_stat_activity where datname = $1 group by 1 order by 1`,
    [dbName],
  );
}
const exitCode = await server.stop();
if (adminUrl) {
  await new Promise((r) => setTimeout(r, 500));
  connectionsAfterExit = (await admin<{ n: number }>(adminUrl, `select count(*)::int as n from pg_stat_activity where datname = $1`, [dbName]))[0]!.n;
  await admin(adminUrl, `drop database if exists ${dbName} with (force)`);
}
rmSync(dataDir, { recursive: true, force: true });

// RSS trend: least-squares slope over the second half (after warm-up), and first vs last third.
const steady = samples.filter((s) => s.t >= samples.at(-1)!.t / 2 && Number.isFinite(s.rss));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const mt = mean(steady.map((s) => s.t));
const mr = mean(steady.map((s) => s.rss));
const slope = steady.reduce((a, s) => a + (s.t - mt) * (s.rss - mr), 0) / Math.max(1e-9, steady.reduce((a, s) => a + (s.t - mt) ** 2, 0));
const third = Math.max(1, Math.floor(samples.length / 3));
const unexpected = [...errors.values()].reduce((a, b) => a + b, 0);
const idleInTransaction = connectionsWhileIdle.filter((c) => c.state.startsWith("idle in transaction")).reduce((a, c) => a + c.n, 0);

console.log("\n--- soak report ---");
console.log(`calls: ${calls} in ${samples.at(-1)!.t.toFixed(0)} s (${Math.round(calls / samples.at(-1)!.t)}/s)`);
console.log(`by kind: ${[...counts].map(([k, n]) => `${k} ${n}`).join(", ")}`);
console.log(`unexpected errors: ${unexpected}`);
for (const [key, n] of errors) console.log(`  ${n} × ${key}`);
console.log(
  `server RSS: start ${samples[0]!.rss.toFixed(1)} MiB, first third avg ${mean(samples.slice(0, third).map((s) => s.rss)).toFixed(1)}, ` +
    `last third avg ${mean(samples.slice(-third).map((s) => s.rss)).toFixed(1)}, max ${Math.max(...samples.map((s) => s.rss)).toFixed(1)}, ` +
    `end ${samples.at(-1)!.rss.toFixed(1)} MiB; trend over the second half ${(slope * 60).toFixed(2)} MiB/min`,
);
if (adminUrl) {
  console.log(`connections after the load, server still up: ${connectionsWhileIdle.map((c) => `${c.state} ${c.n}`).join(", ") || "none"} (pool max ${POOL})`);
  console.log(`connections after the server exited: ${connectionsAfterExit}`);
}
console.log(`server exit code: ${exitCode}`);
const failed = unexpected > 0 || exitCode !== 0 || idleInTransaction > 0 || (connectionsAfterExit ?? 0) > 0;
console.log(failed ? "SOAK FAILED" : "SOAK PASSED");
if (failed && server.log()) console.log(`server log (tail):\n${server.log().slice(-4000)}`);
process.exit(failed ? 1 : 0);
