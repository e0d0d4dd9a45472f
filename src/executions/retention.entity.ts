import { defineEntity, p } from "@mikro-orm/core";
import { newId } from "../common/ids.ts";
import { tenantIdProperty } from "../db/tenant.ts";

/** Per-tenant execution retention; a tenant without a row uses the default. */
export const ExecutionRetentionSchema = defineEntity({
  name: "ExecutionRetention",
  tableName: "execution_retention",
  properties: {
    tenantId: tenantIdProperty().primary(),
    retentionDays: p.integer(),
    updateTime: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
  },
});

export class ExecutionRetention extends ExecutionRetentionSchema.class {}
ExecutionRetentionSchema.setClass(ExecutionRetention);

/** A record of one purge of executions. */
export const ExecutionPurgeSchema = defineEntity({
  name: "ExecutionPurge",
  tableName: "execution_purges",
  properties: {
    id: p.uuid().primary().onCreate(() => newId()),
    tenantId: tenantIdProperty(),
    count: p.bigint("number"),
    olderThan: p.datetime(),
    actor: p.string().length(256),
    createTime: p.datetime().onCreate(() => new Date()),
  },
});

export class ExecutionPurge extends ExecutionPurgeSchema.class {}
ExecutionPurgeSchema.setClass(ExecutionPurge);
