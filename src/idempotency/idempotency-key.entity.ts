import { defineEntity, p } from "@mikro-orm/core";
import { tenantIdProperty } from "../db/tenant.ts";

/**
 * A request_id seen by a Create* RPC (AIP-155): which method, a digest of the
 * request, and the resource it created, so a retry returns that resource.
 */
export const IdempotencyKeySchema = defineEntity({
  name: "IdempotencyKey",
  tableName: "idempotency_keys",
  properties: {
    tenantId: tenantIdProperty().primary(),
    requestId: p.uuid().primary(),
    method: p.string().length(100),
    requestHash: p.string().length(64),
    resourceId: p.string().length(64).nullable(),
    createTime: p.datetime().onCreate(() => new Date()),
  },
});

export class IdempotencyKey extends IdempotencyKeySchema.class {}
IdempotencyKeySchema.setClass(IdempotencyKey);
