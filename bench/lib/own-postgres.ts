import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { userInfo } from "node:os";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.ts";

const BIN = process.env.BENCH_PG_BIN ?? "/usr/lib/postgresql/15/bin";

/** A throwaway PostgreSQL cluster with pg_stat_statements preloaded (BENCH_PG=own). */
export interface OwnPostgres {
  /** Owner URL of its `postgres` database (user postgres, trust auth, 127.0.0.1 only). */
  url: string;
  /** Stops it (immediate) and deletes its data directory. */
  stop(): void;
}

/**
 * initdb + pg_ctl start on a free port of 127.0.0.1. As root the cluster runs
 * as the `postgres` user (PostgreSQL refuses root).
 */
export async function startOwnPostgres(): Promise<OwnPostgres> {
  const dir = mkdtempSync(join(tmpdir(), "agent-platform-bench-pg-"));
  const root = userInfo().uid === 0;
  const postgresUid = root ? Number(execFileSync("id", ["-u", "postgres"]).toString().trim()) : undefined;
  if (root) chownSync(dir, postgresUid!, postgresUid!);
  const asOwner = (cmd: string, args: string[]) => {
    const [file, argv] = root ? ["runuser", ["-u", "postgres", "--", join(BIN, cmd), ...args]] : [join(BIN, cmd), args];
    const r = spawnSync(file, argv, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr || r.stdout}`);
  };
  const data = join(dir, "data");
  const port = await freePort();
  asOwner("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
  const settings = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    `-c unix_socket_directories=${dir}`,
    "-c shared_preload_libraries=pg_stat_statements",
    "-c fsync=off",
    "-c max_connections=100",
  ].join(" ");
  asOwner("pg_ctl", ["-D", data, "-l", join(dir, "log"), "-o", settings, "-w", "start"]);
  let stopped = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop() {
      if (stopped) return;
      stopped = true;
      try {
        asOwner("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
