import { ExecutionStatusSchema, type ExecutionStatus } from "../../gen/agentplatform/v1/execution_pb.js";
import { enumCodec } from "../common/enum-codec.ts";

/** How execution statuses are stored. */
export const executionStatus = enumCodec<ExecutionStatus>(ExecutionStatusSchema, "EXECUTION_STATUS");

/** Stored statuses of executions that have not finished. */
export const UNFINISHED = ["QUEUED", "RUNNING"];

/** Whether a stored status is terminal. */
export function isTerminal(status: string): boolean {
  return !UNFINISHED.includes(status);
}
