import type { TenantSettings } from "./tenant-settings.entity.ts";

/** The limits of a tenant, each either a tenant override or the configured default. */
export interface Limits {
  /** Requests per second the token bucket refills at; 0 (defaults only): no rate limit. */
  ratePerSecond: number;
  /** Size of the token bucket. */
  rateBurst: number;
  /** Most live agents. */
  maxAgents: number;
  /** Most tools. */
  maxTools: number;
  /** Most credentials not revoked. */
  maxCredentials: number;
  /** Most executions QUEUED or RUNNING at once. */
  maxConcurrentExecutions: number;
}

/** The six limits by name, in the order the contract lists them. */
export const LIMIT_NAMES = [
  "ratePerSecond",
  "rateBurst",
  "maxAgents",
  "maxTools",
  "maxCredentials",
  "maxConcurrentExecutions",
] as const satisfies readonly (keyof Limits)[];

/** Name of a limit. */
export type LimitName = (typeof LIMIT_NAMES)[number];

/** The update_mask path of each limit (TenantLimits in tenant.proto). */
export const LIMIT_PATHS: Record<LimitName, string> = {
  ratePerSecond: "rate_limit_per_second",
  rateBurst: "rate_limit_burst",
  maxAgents: "max_agents",
  maxTools: "max_tools",
  maxCredentials: "max_credentials",
  maxConcurrentExecutions: "max_concurrent_executions",
};

/** The limits in force: the tenant's overrides (when it has a row) over the defaults. */
export function effectiveLimits(row: TenantSettings | null | undefined, defaults: Limits): Limits {
  const limits = { ...defaults };
  if (!row) return limits;
  for (const name of LIMIT_NAMES) {
    const override = row[name];
    if (override !== null && override !== undefined) limits[name] = override;
  }
  return limits;
}
