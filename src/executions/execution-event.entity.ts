import type { JsonObject } from "@bufbuild/protobuf";
import { defineEntity, p } from "@mikro-orm/core";
import { tenantIdProperty } from "../db/tenant.ts";

/** A stored stream event, so a client that lost its stream can resume after a sequence number. */
export const ExecutionEventSchema = defineEntity({
  name: "ExecutionEvent",
  tableName: "execution_events",
  properties: {
    tenantId: tenantIdProperty().primary(),
    executionId: p.uuid().primary(),
    sequence: p.bigint("number").primary(),
    /** The ExecutionEvent message in protobuf JSON form. */
    event: p.json<JsonObject>(),
  },
});

export class ExecutionEvent extends ExecutionEventSchema.class {}
ExecutionEventSchema.setClass(ExecutionEvent);
