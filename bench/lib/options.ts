/** What `npm run bench` reads from its environment; every number is bounded. */
export interface BenchOptions {
  /** Seconds each row is measured (BENCH_SECONDS, 10), after a short warm-up. */
  seconds: number;
  /** HTTP/2 connections of the load generator (BENCH_CONNECTIONS, 4). */
  connections: number;
  /** Concurrent streams per connection (BENCH_STREAMS, 4). */
  streams: number;
  /** HTTP/1.1 keep-alive connections of the Connect JSON row (BENCH_H1_CONNECTIONS, 16). */
  h1Connections: number;
  /** Rows to run by name (BENCH_ROWS, comma-separated, case-insensitive prefixes); undefined: all. The ceiling always runs. */
  rows: string[] | undefined;
  /** Owner URL of a PostgreSQL server (BENCH_DATABASE_URL); the bench creates and drops its own database there. */
  databaseUrl: string | undefined;
  /** BENCH_PG=own: start a throwaway PostgreSQL 15 cluster with pg_stat_statements. */
  ownPostgres: boolean;
  /** Tenants seeded (BENCH_TENANTS, 4). */
  tenants: number;
  /** Agents seeded per tenant (BENCH_AGENTS, 256). */
  agentsPerTenant: number;
  /** Tools seeded per tenant (BENCH_TOOLS, 32). */
  toolsPerTenant: number;
  /** Executions seeded for the first tenant (BENCH_EXECUTIONS, 600), so a deep page exists. */
  executions: number;
  /**
   * Who drives rows whose calls are all the same (BENCH_DRIVER): "auto" (default) h2load when it is
   * there or can be installed, else the own generator; "h2load" insists; "node" uses the own generator for every row.
   */
  driver: "auto" | "h2load" | "node";
  /** Append the rows to bench/history.tsv (BENCH_HISTORY=0 to skip). */
  history: boolean;
}

export function readOptions(env: NodeJS.ProcessEnv = process.env): BenchOptions {
  return {
    seconds: bounded(env, "BENCH_SECONDS", 10, 1, 300),
    connections: bounded(env, "BENCH_CONNECTIONS", 4, 1, 64),
    streams: bounded(env, "BENCH_STREAMS", 4, 1, 256),
    h1Connections: bounded(env, "BENCH_H1_CONNECTIONS", 16, 1, 256),
    rows: env.BENCH_ROWS ? env.BENCH_ROWS.split(",").map((r) => r.trim().toLowerCase()).filter(Boolean) : undefined,
    databaseUrl: env.BENCH_DATABASE_URL || undefined,
    ownPostgres: env.BENCH_PG === "own",
    tenants: bounded(env, "BENCH_TENANTS", 4, 1, 64),
    agentsPerTenant: bounded(env, "BENCH_AGENTS", 256, 10, 10_000),
    toolsPerTenant: bounded(env, "BENCH_TOOLS", 32, 5, 1_000),
    executions: bounded(env, "BENCH_EXECUTIONS", 600, 100, 100_000),
    driver: driverOf(env.BENCH_DRIVER),
    history: env.BENCH_HISTORY !== "0",
  };
}

function driverOf(raw: string | undefined): BenchOptions["driver"] {
  if (raw === undefined || raw === "" || raw === "auto") return "auto";
  if (raw === "h2load" || raw === "node") return raw;
  throw new Error(`BENCH_DRIVER must be auto, h2load or node, got ${JSON.stringify(raw)}`);
}

function bounded(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new Error(`${name} must be a number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}
