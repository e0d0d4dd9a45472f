import { defineEntity, p } from "@mikro-orm/core";
import { tenantIdProperty } from "../db/tenant.ts";

/**
 * A tenant's overrides of the configured limits, one row per tenant. A null
 * column takes the default. The row is also the lock that quota checks take
 * (SELECT … FOR UPDATE) so that concurrent creates count one after another.
 */
export const TenantSettingsSchema = defineEntity({
  name: "TenantSettings",
  tableName: "tenant_settings",
  properties: {
    tenantId: tenantIdProperty().primary(),
    ratePerSecond: p.integer().nullable(),
    rateBurst: p.integer().nullable(),
    maxAgents: p.integer().nullable(),
    maxTools: p.integer().nullable(),
    maxCredentials: p.integer().nullable(),
    maxConcurrentExecutions: p.integer().nullable(),
    createTime: p.datetime().onCreate(() => new Date()),
    // Set when an operator changes the limits; null while the row only serves as a lock.
    updateTime: p.datetime().nullable(),
    version: p.integer().version(),
  },
});

export class TenantSettings extends TenantSettingsSchema.class {}
TenantSettingsSchema.setClass(TenantSettings);
