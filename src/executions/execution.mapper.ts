import { create } from "@bufbuild/protobuf";
import {
  ExecutionSchema as ExecutionMessageSchema,
  type Execution as ExecutionMessage,
  type Usage,
} from "../../gen/agentplatform/v1/execution_pb.js";
import { toTimestamp } from "../common/time.ts";
import { executionStatus } from "./codecs.ts";
import type { Execution } from "./execution.entity.ts";

/** Options of the API view. */
export interface ExecutionView {
  /** Admins see error details (stacks, upstream bodies); others do not. */
  admin: boolean;
  /** Child executions, already mapped. */
  children?: ExecutionMessage[];
  /** Usage of this run and all its descendants. */
  totalUsage?: Usage;
}

/** The API view of an execution. */
export function toExecutionMessage(e: Execution, view: ExecutionView): ExecutionMessage {
  const usage = { inputTokens: BigInt(e.inputTokens), outputTokens: BigInt(e.outputTokens), costMicrosUsd: BigInt(e.costMicros) };
  return create(ExecutionMessageSchema, {
    id: e.id,
    agentId: e.agentId,
    agentVersion: e.agentVersion,
    sessionId: e.sessionId,
    status: executionStatus.fromDb(e.status),
    prompt: e.prompt,
    input: e.input ?? undefined,
    model: e.model,
    response: e.response,
    usage,
    totalUsage: view.totalUsage ?? usage,
    latencyMs: BigInt(e.latencyMs ?? 0),
    timeToFirstOutputMs: BigInt(e.timeToFirstOutputMs ?? 0),
    error: e.errorCode ? { code: e.errorCode, message: e.errorMessage, detail: view.admin ? e.errorDetail : "" } : undefined,
    requestId: e.requestId ?? "",
    creator: e.creator,
    createTime: toTimestamp(e.createTime),
    startTime: toTimestamp(e.startTime),
    endTime: toTimestamp(e.endTime),
    parentExecutionId: e.parentExecutionId ?? "",
    children: view.children ?? [],
    testModel: e.testModel,
  });
}
