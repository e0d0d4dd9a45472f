import type { ServiceImpl } from "@connectrpc/connect";
import type { EntityManager } from "@mikro-orm/postgresql";
import type { TenantService } from "../../gen/agentplatform/v1/tenant_service_pb.js";
import { emOf, principalOf } from "../call-context.ts";
import { checkEtag } from "../common/etag.ts";
import { maskPaths } from "../common/field-mask.ts";
import { afterCommit } from "../db/call-transaction.ts";
import { tenantOf } from "../db/tenant.ts";
import { effectiveLimits, LIMIT_NAMES, LIMIT_PATHS, type Limits } from "./limits.ts";
import type { Quotas } from "./quotas.ts";
import { TenantSettingsRepository } from "./settings.repository.ts";
import { LIMIT_FIELDS, toFeatureToggleMessage, toTenantSettingsMessage } from "./tenant.mapper.ts";
import { setToggle, toggleStates } from "./toggles.ts";

/** What the tenant handlers need. */
export interface TenantDeps {
  /** The configured default limits. */
  tenantLimits: Limits;
  quotas: Quotas;
  /** Told when a tenant's limits change, so this process applies them at once. */
  limiter: { forget(tenantId: string): void };
}

const UPDATABLE = LIMIT_NAMES.map((name) => LIMIT_PATHS[name]);

/**
 * TenantService over the request's EntityManager, scoped (scopeToTenant) to
 * the tenant admission named: the caller's own or, for an operator, the one
 * the request names.
 */
export function tenantHandler(deps: TenantDeps): ServiceImpl<typeof TenantService> {
  const view = async (em: EntityManager) => {
    const row = await new TenantSettingsRepository(em).find();
    return toTenantSettingsMessage({
      tenantId: tenantOf(em),
      row,
      limits: effectiveLimits(row, deps.tenantLimits),
      usage: await deps.quotas.usage(em),
      toggles: await toggleStates(em),
    });
  };

  return {
    async getTenantSettings(_req, ctx) {
      return { settings: await view(emOf(ctx)) };
    },

    async updateTenantLimits(req, ctx) {
      const paths = maskPaths(req.updateMask, UPDATABLE);
      const input = req.limits!;
      const em = emOf(ctx);
      await em.transactional(async (tx) => {
        const row = await new TenantSettingsRepository(tx).lock();
        checkEtag(req.etag, { version: row.version, id: row.tenantId }, "tenant_settings");
        for (const name of LIMIT_NAMES) {
          if (paths.has(LIMIT_PATHS[name])) row[name] = input[LIMIT_FIELDS[name]] ?? null;
        }
        row.updateTime = new Date();
      });
      // Once committed: a call that reloads the limits meanwhile would cache the old ones.
      afterCommit(em, () => deps.limiter.forget(tenantOf(em)));
      return { settings: await view(em) };
    },

    async setFeatureToggle(req, ctx) {
      const state = await setToggle(emOf(ctx), req.name, req.enabled, principalOf(ctx).subject);
      return { featureToggle: toFeatureToggleMessage(state) };
    },
  };
}
