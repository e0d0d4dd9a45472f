import type { EntityManager } from "@mikro-orm/postgresql";
import { QuotaResource } from "../../gen/agentplatform/v1/tenant_pb.js";
import { QuotaExceededError } from "../common/errors.ts";
import { tenantOf } from "../db/tenant.ts";
import { effectiveLimits, type LimitName, type Limits } from "./limits.ts";
import { TenantSettingsRepository } from "./settings.repository.ts";

/** A resource a tenant has a quota of. */
export type QuotaName = "agents" | "tools" | "credentials" | "concurrentExecutions";

interface QuotaDefinition {
  /** The limit that bounds it. */
  limit: LimitName;
  /** Its value in the contract. */
  resource: QuotaResource;
  /** Plural noun for messages and subjects, e.g. "live agents". */
  noun: string;
  /** Path segment of the QuotaFailure subject. */
  subject: string;
}

/** How many of each resource a tenant has now; the composition root counts them (src/entities.ts). */
export type QuotaCounters = Record<QuotaName, (em: EntityManager) => Promise<number>>;

const QUOTAS: Record<QuotaName, QuotaDefinition> = {
  agents: {
    limit: "maxAgents",
    resource: QuotaResource.AGENTS,
    noun: "live agents",
    subject: "agents",
  },
  tools: {
    limit: "maxTools",
    resource: QuotaResource.TOOLS,
    noun: "tools",
    subject: "tools",
  },
  credentials: {
    limit: "maxCredentials",
    resource: QuotaResource.CREDENTIALS,
    noun: "credentials that are not revoked",
    subject: "credentials",
  },
  concurrentExecutions: {
    limit: "maxConcurrentExecutions",
    resource: QuotaResource.CONCURRENT_EXECUTIONS,
    noun: "executions queued or running",
    subject: "concurrent_executions",
  },
};

/** One quota with the tenant's usage. */
export interface QuotaUsageRow {
  resource: QuotaResource;
  limit: number;
  used: number;
}

/** Quota checks and usage, over the configured default limits. */
export interface Quotas {
  /**
   * Call inside the transaction that adds `adding` of `quota`, before adding
   * them: locks the tenant's settings row, counts, and throws
   * RESOURCE_EXHAUSTED (QuotaFailure, reason QUOTA_EXCEEDED) when the
   * addition would pass the quota. The lock is held until the transaction
   * ends, so a concurrent addition counts after this one has committed.
   */
  reserve(tx: EntityManager, quota: QuotaName, adding?: number): Promise<void>;
  /** Every quota in force with the tenant's current usage. */
  usage(em: EntityManager): Promise<QuotaUsageRow[]>;
}

/** Quotas whose defaults are `defaults`; a tenant's settings row overrides them. */
export function createQuotas(defaults: Limits, counters: QuotaCounters): Quotas {
  return {
    async reserve(tx, quota, adding = 1) {
      const definition = QUOTAS[quota];
      const settings = await new TenantSettingsRepository(tx).lock();
      const limit = effectiveLimits(settings, defaults)[definition.limit];
      const used = await counters[quota](tx);
      if (used + adding <= limit) return;
      const description = `at most ${limit} ${definition.noun}; the tenant has ${used}`;
      throw new QuotaExceededError(
        `quota exceeded: ${description}`,
        [{ subject: `tenants/${tenantOf(tx)}/${definition.subject}`, description }],
        { resource: definition.subject, limit: String(limit), used: String(used) },
      );
    },

    async usage(em) {
      const limits = effectiveLimits(await new TenantSettingsRepository(em).find(), defaults);
      const names = Object.keys(QUOTAS) as QuotaName[];
      // One query at a time: the request's EntityManager holds one connection.
      const rows: QuotaUsageRow[] = [];
      for (const name of names) {
        const definition = QUOTAS[name];
        rows.push({ resource: definition.resource, limit: limits[definition.limit], used: await counters[name](em) });
      }
      return rows;
    },
  };
}
