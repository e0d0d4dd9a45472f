import { defineEntity, p } from "@mikro-orm/core";
import { tenantIdProperty } from "../db/tenant.ts";

/** An operator's setting of one feature toggle for one tenant; no row means the default. */
export const TenantFeatureToggleSchema = defineEntity({
  name: "TenantFeatureToggle",
  tableName: "tenant_feature_toggles",
  properties: {
    tenantId: tenantIdProperty().primary(),
    name: p.string().length(100).primary(),
    enabled: p.boolean(),
    actor: p.string().length(256),
    updateTime: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
  },
});

export class TenantFeatureToggle extends TenantFeatureToggleSchema.class {}
TenantFeatureToggleSchema.setClass(TenantFeatureToggle);
