import { createHash } from "node:crypto";
import { hostname } from "node:os";
import type { DatabaseConfig } from "./db/orm.ts";
import { LOG_LEVELS, type LogLevel } from "./log.ts";
import { parsePrices, type PriceTable } from "./executions/prices.ts";
import { DEVELOPMENT_SECRET, type TokenConfig } from "./auth/tokens.ts";
import { parseKeyring, type Keyring } from "./credentials/keyring.ts";
import type { Limits } from "./tenants/limits.ts";

/** Everything the server reads from its environment. */
export interface Config {
  /** Port to listen on (0 picks a free one). */
  port: number;
  /** Address to bind. */
  host: string;
  /** Database. */
  database: DatabaseConfig;
  /** Token verification. */
  tokens: TokenConfig;
  /** True when tokens are checked with the built-in development secret. */
  developmentSecret: boolean;
  /** Key that signs page tokens. */
  pageTokenSecret: Uint8Array;
  /** Browser origins allowed by CORS ("*" for any). */
  corsOrigins: string[];
  /** PEM certificate and key paths; TLS when both are set. */
  tls?: { certFile: string; keyFile: string };
  /** Largest request or response message, in bytes. */
  maxMessageBytes: number;
  /** Longest deadline a client may ask for, in ms. */
  maxTimeoutMs: number;
  /** Deadline of a unary call whose client sent none, in ms. */
  defaultDeadlineMs: number;
  /** How long in-flight calls may run after SIGTERM, in ms. */
  shutdownGraceMs: number;
  /** How often the database probe runs `select 1` to drive health, in ms (0: never; PostgreSQL only). */
  databaseProbeIntervalMs: number;
  /** A database probe not answered within this is a failure, in ms. */
  databaseProbeTimeoutMs: number;
  /** Days a soft-deleted agent is kept before it is purged. */
  agentRetentionDays: number;
  /** How often expired soft-deleted agents are purged, in ms (0: never). */
  purgeIntervalMs: number;
  /** Key-encryption keys of credentials (CREDENTIAL_KEYS); undefined: a development key under DATA_DIR. */
  credentialKeys: Keyring | undefined;
  /** Timeout of an execution whose agent config sets no timeout_ms, in ms. */
  executionTimeoutMs: number;
  /** Model prices for execution cost (MODEL_PRICES). */
  prices: PriceTable;
  /** This process's name in the executions it runs (orphan recovery after a crash). */
  instanceId: string;
  /** An execution whose heartbeat is older than this is closed as FAILED, in ms. */
  orphanAfterMs: number;
  /** How often execution retention is applied, in ms (0: never). */
  retentionIntervalMs: number;
  /**
   * Unary calls of one tenant running at once in this process
   * (TENANT_CALLS_IN_FLIGHT); undefined: half the database's connections.
   */
  tenantCallsInFlight: number | undefined;
  /** Default per-tenant rate limit and quotas (RATE_LIMIT_*, QUOTA_MAX_*); tenants may have overrides. */
  tenantLimits: Limits;
  /** Redis holding the shared rate-limit buckets (REDIS_URL); undefined: the database holds them. */
  redisUrl: string | undefined;
  /** How long a process keeps a tenant's limits before reading them again, in ms. */
  tenantSettingsCacheMs: number;
  /**
   * Let tenant-configured outbound calls (agent endpoints) reach loopback,
   * private and link-local addresses (OUTBOUND_ALLOW_PRIVATE=true): for
   * development against local endpoints, never in a shared deployment.
   */
  outboundAllowPrivate: boolean;
  /**
   * Which server answers gRPC over h2c (GRPC_PATH): "grpc-js" (default, the
   * fast path) or "connect" (connect-node, as for every other protocol).
   */
  grpcPath: "grpc-js" | "connect";
  /** Log level. */
  logLevel: LogLevel;
  /** NODE_ENV=production. */
  production: boolean;
}

/** Reads the configuration from environment variables (see README). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const production = env.NODE_ENV === "production";
  const secretText = env.JWT_SECRET ?? (env.JWT_JWKS_URL ? undefined : DEVELOPMENT_SECRET);
  const developmentSecret = secretText === DEVELOPMENT_SECRET;
  if (production && developmentSecret) {
    throw new Error("refusing to start in production with the development JWT secret: set JWT_SECRET or JWT_JWKS_URL");
  }
  const secret = secretText === undefined ? undefined : new TextEncoder().encode(secretText);
  const pageTokenSecret = env.PAGE_TOKEN_SECRET
    ? new TextEncoder().encode(env.PAGE_TOKEN_SECRET)
    : createHash("sha256").update(`page-token:${secretText ?? env.JWT_JWKS_URL}`).digest();
  if (production && !env.CREDENTIAL_KEYS) {
    throw new Error("refusing to start in production without CREDENTIAL_KEYS (comma-separated id:base64key, newest last)");
  }
  const certFile = env.TLS_CERT_FILE;
  const keyFile = env.TLS_KEY_FILE;
  if (Boolean(certFile) !== Boolean(keyFile)) {
    throw new Error("TLS needs both TLS_CERT_FILE and TLS_KEY_FILE");
  }
  return {
    port: int(env, "PORT", 8080),
    host: env.HOST ?? "0.0.0.0",
    database: {
      url: env.DATABASE_URL || undefined,
      appUrl: env.APP_DATABASE_URL || undefined,
      dataDir: env.DATA_DIR ?? "./data",
      poolMax: int(env, "DB_POOL_MAX", 10),
      acquireTimeoutMs: int(env, "DB_ACQUIRE_TIMEOUT_MS", 5_000),
      debug: env.DB_DEBUG === "1",
    },
    tokens: {
      secret,
      jwksUrl: env.JWT_JWKS_URL || undefined,
      issuer: env.JWT_ISSUER || undefined,
      audience: env.JWT_AUDIENCE || undefined,
    },
    developmentSecret,
    pageTokenSecret,
    corsOrigins: (env.CORS_ORIGINS ?? "")
      .split(",")
      .map((o) => o.trim())
      .filter(Boolean),
    tls: certFile && keyFile ? { certFile, keyFile } : undefined,
    maxMessageBytes: int(env, "MAX_MESSAGE_BYTES", 4 * 1024 * 1024),
    maxTimeoutMs: int(env, "MAX_TIMEOUT_MS", 5 * 60_000),
    defaultDeadlineMs: int(env, "DEFAULT_DEADLINE_MS", 30_000),
    shutdownGraceMs: int(env, "SHUTDOWN_GRACE_MS", 10_000),
    databaseProbeIntervalMs: int(env, "DB_PROBE_INTERVAL_MS", 5_000),
    databaseProbeTimeoutMs: Math.max(1, int(env, "DB_PROBE_TIMEOUT_MS", 2_000)),
    agentRetentionDays: int(env, "AGENT_RETENTION_DAYS", 30),
    purgeIntervalMs: int(env, "PURGE_INTERVAL_MS", 60 * 60_000),
    credentialKeys: env.CREDENTIAL_KEYS ? parseKeyring(env.CREDENTIAL_KEYS) : undefined,
    executionTimeoutMs: int(env, "EXECUTION_TIMEOUT_MS", 120_000),
    prices: parsePrices(env.MODEL_PRICES),
    instanceId: env.INSTANCE_ID || `${hostname()}:${int(env, "PORT", 8080)}`,
    orphanAfterMs: int(env, "ORPHAN_AFTER_MS", 60_000),
    retentionIntervalMs: int(env, "RETENTION_INTERVAL_MS", 60 * 60_000),
    tenantLimits: {
      ratePerSecond: int(env, "RATE_LIMIT_PER_SECOND", 100),
      rateBurst: Math.max(1, int(env, "RATE_LIMIT_BURST", 200)),
      maxAgents: int(env, "QUOTA_MAX_AGENTS", 10_000),
      maxTools: int(env, "QUOTA_MAX_TOOLS", 10_000),
      maxCredentials: int(env, "QUOTA_MAX_CREDENTIALS", 10_000),
      maxConcurrentExecutions: int(env, "QUOTA_MAX_CONCURRENT_EXECUTIONS", 1_000),
    },
    tenantCallsInFlight: env.TENANT_CALLS_IN_FLIGHT ? Math.max(1, int(env, "TENANT_CALLS_IN_FLIGHT", 1)) : undefined,
    redisUrl: env.REDIS_URL || undefined,
    tenantSettingsCacheMs: int(env, "TENANT_SETTINGS_CACHE_MS", 1_000),
    outboundAllowPrivate: bool(env, "OUTBOUND_ALLOW_PRIVATE"),
    grpcPath: grpcPathOf(env.GRPC_PATH),
    logLevel: logLevel(env.LOG_LEVEL),
    production,
  };
}

// A level the logger does not know would compare as below every level and log everything.
function logLevel(raw: string | undefined): LogLevel {
  if (raw === undefined || raw === "") return "info";
  if (!(LOG_LEVELS as readonly string[]).includes(raw)) {
    throw new Error(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(raw)}`);
  }
  return raw as LogLevel;
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

// A yes/no setting: "true" or "false" (absent or empty: false); anything else is a typo to report.
function bool(env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "" || raw === "false") return false;
  if (raw === "true") return true;
  throw new Error(`${name} must be "true" or "false", got ${JSON.stringify(raw)}`);
}

function grpcPathOf(value: string | undefined): Config["grpcPath"] {
  if (value === undefined || value === "" || value === "grpc-js") return "grpc-js";
  if (value === "connect") return "connect";
  throw new Error(`GRPC_PATH must be "grpc-js" or "connect", not ${JSON.stringify(value)}`);
}
