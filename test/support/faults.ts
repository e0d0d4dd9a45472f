import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { MikroORM } from "@mikro-orm/core";
import pg from "pg";
import type { Role } from "../../src/auth/principal.ts";
import { mintToken } from "../../src/auth/tokens.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { createAppServer, type AppServer } from "../../src/server.ts";
import { TEST_CREDENTIAL_KEYS, TEST_ENV, TEST_SECRET } from "./server.ts";

/*
 * Tools for fault tests on PostgreSQL: a throwaway cluster of the test's own
 * that it may stop and start (the shared server at TEST_DATABASE_URL is never
 * stopped), superuser SQL, and a server over an ORM the test configured.
 */

const run = promisify(execFile);
const BIN = "/usr/lib/postgresql/15/bin";

/** A PostgreSQL cluster in a temporary folder, on a free port, owned by this test. */
export interface PrivateCluster {
  /** A URL of database `name` as the superuser postgres. */
  url(name?: string): string;
  /** Stops it (fast shutdown: sessions are terminated, as in a real outage). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and deletes its files. */
  destroy(): Promise<void>;
}

/**
 * Creates and starts a private cluster; resolves with why not when that is
 * impossible here (no PostgreSQL 15 binaries, or root without a postgres
 * user), so the caller can skip with the reason.
 */
export async function startPrivateCluster(): Promise<PrivateCluster | string> {
  if (!existsSync(join(BIN, "initdb"))) return `no PostgreSQL binaries in ${BIN}`;
  const root = userInfo().uid === 0;
  // initdb and pg_ctl refuse to run as root: as root, run them as postgres.
  const as = (cmd: string, args: string[]) => (root ? run("runuser", ["-u", "postgres", "--", cmd, ...args]) : run(cmd, args));
  const dir = mkdtempSync(join(tmpdir(), "agent-platform-pg-"));
  try {
    if (root) chownSync(dir, Number((await run("id", ["-u", "postgres"])).stdout.trim()), Number((await run("id", ["-g", "postgres"])).stdout.trim()));
    const port = await freePort();
    const data = join(dir, "data");
    await as(join(BIN, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
    const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
    const ctl = (...args: string[]) => as(join(BIN, "pg_ctl"), ["-D", data, "-w", "-t", "30", ...args]);
    const start = async () => void (await ctl("-o", options, "-l", join(dir, "log"), "start"));
    const stop = async () => void (await ctl("-m", "fast", "stop").catch(() => undefined));
    await start();
    return {
      url: (name = "postgres") => `postgres://postgres@127.0.0.1:${port}/${name}`,
      start,
      stop,
      async destroy() {
        await stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot run a private PostgreSQL cluster here: ${(err as Error).message.split("\n")[0]}`;
  }
}

/** Runs statements as whoever `url` names (a superuser in tests); returns the last result's rows. */
export async function superuser<T = Record<string, unknown>>(url: string, ...statements: [string, unknown[]?][]): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  await client.connect();
  try {
    let rows: T[] = [];
    for (const [sql, params] of statements) rows = (await client.query(sql, params)).rows as T[];
    return rows;
  } finally {
    await client.end();
  }
}

/** The database name of a PostgreSQL URL. */
export const databaseOf = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));

/** The URL of `url`'s server as the superuser postgres, on the same database. */
export function asSuperuser(url: string): string {
  const u = new URL(url);
  u.username = "postgres";
  u.password = "";
  return u.toString();
}

/** A server over an ORM the test opened (its pool, its timeouts). */
export interface FaultServer {
  url: string;
  server: AppServer;
  logs: string[];
  token(tenant: string, roles?: Role[]): Promise<string>;
  /** Shuts the server down (the ORM stays open: the test owns it). */
  close(): Promise<void>;
}

/** A superuser session on the database of `url`, to hold locks and cancel backends. */
export async function superuserSession(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: asSuperuser(url) });
  client.on("error", () => {});
  await client.connect();
  return client;
}

/** The service's sessions on the session's database (the owner's and the session's own aside), as they are now. */
export async function serviceSessions(
  admin: pg.Client,
): Promise<{ pid: number; state: string; wait_event_type: string | null; query: string }[]> {
  // pg_stat_activity is read once per transaction unless its snapshot is cleared.
  await admin.query("select pg_stat_clear_snapshot()");
  const { rows } = await admin.query(
    `select pid, state, wait_event_type, query from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and usename <> 'postgres'`,
  );
  return rows;
}

/** The service's sessions that wait for a lock now. */
export async function waitingOnLocks(admin: pg.Client) {
  return (await serviceSessions(admin)).filter((a) => a.state === "active" && a.wait_event_type === "Lock");
}

/** Starts a server over `orm`; `env` adds configuration (DATABASE_URL turns the database probe on). */
export async function serverOver(orm: MikroORM, env: Record<string, string>): Promise<FaultServer> {
  const logs: string[] = [];
  const config = loadConfig({ JWT_SECRET: TEST_SECRET, CREDENTIAL_KEYS: TEST_CREDENTIAL_KEYS, HOST: "127.0.0.1", PORT: "0", ...TEST_ENV, ...env });
  const server = createAppServer({ config, orm, logger: createLogger("debug", (line) => void logs.push(line)) });
  const port = await server.listen(0, "127.0.0.1");
  server.health.setServing(true);
  const secret = new TextEncoder().encode(TEST_SECRET);
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    logs,
    token: (tenant, roles = ["editor"]) => mintToken(secret, { tenants: [tenant], roles, subject: "fault-test", ttl: "10m" }),
    close: () => server.shutdown(),
  };
}

/** The log lines at level error that say something went wrong internally. */
export function internalErrors(logs: string[]): string[] {
  return logs.filter((l) => /"level":"error"/.test(l) && /"msg":"internal error"/.test(l));
}

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns a value, failing after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Runs SQL as the database owner (TestDatabase.sql). */
export type OwnerSql = <T = Record<string, unknown>>(query: string, params?: unknown[]) => Promise<T[]>;

/**
 * A function counting the rows of every table of the schema (migrations'
 * bookkeeping and rate-limit buckets aside: every call writes those, by
 * design), to show that a failed call wrote nothing.
 */
export async function rowCounter(sql: OwnerSql): Promise<() => Promise<Record<string, number>>> {
  const tables = (
    await sql<{ name: string }>(`select tablename as name from pg_tables where schemaname = 'public' order by 1`)
  )
    .map((t) => t.name)
    .filter((name) => !name.startsWith("mikro_orm") && !name.includes("bucket"));
  const query = tables.map((t) => `select '${t}' as name, count(*)::int as n from "${t}"`).join(" union all ");
  return async () => Object.fromEntries((await sql<{ name: string; n: number }>(query)).map((r) => [r.name, r.n]));
}
