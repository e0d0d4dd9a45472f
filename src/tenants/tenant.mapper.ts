import { create } from "@bufbuild/protobuf";
import {
  FeatureToggleSchema,
  QuotaUsageSchema,
  TenantLimitsSchema,
  TenantSettingsSchema as TenantSettingsMessageSchema,
  type FeatureToggle,
  type TenantLimits,
  type TenantSettings as TenantSettingsMessage,
} from "../../gen/agentplatform/v1/tenant_pb.js";
import { etagOf } from "../common/etag.ts";
import { toTimestamp } from "../common/time.ts";
import { LIMIT_NAMES, type LimitName, type Limits } from "./limits.ts";
import type { QuotaUsageRow } from "./quotas.ts";
import type { TenantSettings } from "./tenant-settings.entity.ts";
import type { ToggleState } from "./toggles.ts";

/** The TenantLimits field of each limit. */
export const LIMIT_FIELDS: Record<LimitName, keyof Omit<TenantLimits, "$typeName" | "$unknown">> = {
  ratePerSecond: "rateLimitPerSecond",
  rateBurst: "rateLimitBurst",
  maxAgents: "maxAgents",
  maxTools: "maxTools",
  maxCredentials: "maxCredentials",
  maxConcurrentExecutions: "maxConcurrentExecutions",
};

// A tenant without a row has the settings of a fresh row, version 1
// included: the row a quota check creates changes no limit, nor the etag.
const FIRST_VERSION = 1;

/** Everything GetTenantSettings shows. */
export interface SettingsView {
  tenantId: string;
  row: TenantSettings | null;
  limits: Limits;
  usage: QuotaUsageRow[];
  toggles: ToggleState[];
}

/** The API view of a tenant's settings. */
export function toTenantSettingsMessage(view: SettingsView): TenantSettingsMessage {
  const overrides = create(TenantLimitsSchema);
  const limits = create(TenantLimitsSchema);
  for (const name of LIMIT_NAMES) {
    limits[LIMIT_FIELDS[name]] = view.limits[name];
    const override = view.row?.[name];
    if (override !== null && override !== undefined) overrides[LIMIT_FIELDS[name]] = override;
  }
  return create(TenantSettingsMessageSchema, {
    tenantId: view.tenantId,
    limits,
    overrides,
    quotaUsage: view.usage.map((u) => create(QuotaUsageSchema, { resource: u.resource, limit: BigInt(u.limit), used: BigInt(u.used) })),
    featureToggles: view.toggles.map(toFeatureToggleMessage),
    updateTime: toTimestamp(view.row?.updateTime),
    etag: etagOf(view.row?.version ?? FIRST_VERSION),
  });
}

/** The API view of one toggle's value for the tenant. */
export function toFeatureToggleMessage(state: ToggleState): FeatureToggle {
  return create(FeatureToggleSchema, {
    name: state.name,
    enabled: state.enabled,
    defaultEnabled: state.defaultEnabled,
    overridden: state.override !== undefined,
    description: state.description,
    updateTime: toTimestamp(state.override?.updateTime),
  });
}
