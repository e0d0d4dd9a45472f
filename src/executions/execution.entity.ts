import type { JsonObject } from "@bufbuild/protobuf";
import { defineEntity, p } from "@mikro-orm/core";
import { newId } from "../common/ids.ts";
import { tenantIdProperty } from "../db/tenant.ts";

/**
 * One run of an agent. Status only moves forward (QUEUED → RUNNING →
 * terminal): every status change is a conditional update on the current
 * status, so a terminal execution never changes again.
 */
export const ExecutionSchema = defineEntity({
  name: "Execution",
  tableName: "executions",
  properties: {
    id: p.uuid().primary().onCreate(() => newId()),
    tenantId: tenantIdProperty(),
    agentId: p.uuid(),
    agentVersion: p.integer(),
    parentExecutionId: p.uuid().nullable(),
    sessionId: p.string().length(200),
    status: p.string().length(16),
    prompt: p.text(),
    input: p.json<JsonObject>().nullable(),
    model: p.string().length(200),
    response: p.text(),
    inputTokens: p.bigint("number"),
    outputTokens: p.bigint("number"),
    costMicros: p.bigint("number"),
    latencyMs: p.bigint("number").nullable(),
    timeToFirstOutputMs: p.bigint("number").nullable(),
    errorCode: p.string().length(32),
    errorMessage: p.text(),
    errorDetail: p.text(),
    requestId: p.uuid().nullable(),
    requestHash: p.string().length(64),
    creator: p.string().length(256),
    testModel: p.boolean(),
    instanceId: p.string().length(200),
    heartbeatTime: p.datetime().nullable(),
    createTime: p.datetime().onCreate(() => new Date()),
    startTime: p.datetime().nullable(),
    endTime: p.datetime().nullable(),
  },
});

export class Execution extends ExecutionSchema.class {}
ExecutionSchema.setClass(Execution);
