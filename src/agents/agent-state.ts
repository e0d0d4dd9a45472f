import { AgentState } from "../../gen/agentplatform/v1/agent_pb.js";
import { FailedPreconditionError } from "../common/errors.ts";

/**
 * Which lifecycle states an agent may move to through UpdateAgent. DELETED is
 * reached only through DeleteAgent and left only through UndeleteAgent.
 */
const allowed: Record<number, AgentState[]> = {
  [AgentState.CONFIGURING]: [AgentState.ACTIVE, AgentState.INACTIVE, AgentState.ERROR],
  [AgentState.ACTIVE]: [AgentState.INACTIVE, AgentState.CONFIGURING, AgentState.ERROR],
  [AgentState.INACTIVE]: [AgentState.ACTIVE, AgentState.CONFIGURING],
  [AgentState.ERROR]: [AgentState.ACTIVE, AgentState.INACTIVE, AgentState.CONFIGURING],
};

/** Throws FAILED_PRECONDITION unless `from` → `to` is an allowed transition. */
export function checkTransition(agentId: string, from: AgentState, to: AgentState): void {
  if (from === to) return;
  if (to === AgentState.DELETED) {
    throw new FailedPreconditionError("use DeleteAgent to delete an agent", "STATE_TRANSITION_NOT_ALLOWED", [
      { type: "STATE_TRANSITION", subject: `agents/${agentId}`, description: "DELETED is set by DeleteAgent" },
    ]);
  }
  if (!(allowed[from] ?? []).includes(to)) {
    throw new FailedPreconditionError(
      `an agent cannot go from ${AgentState[from]} to ${AgentState[to]}`,
      "STATE_TRANSITION_NOT_ALLOWED",
      [
        {
          type: "STATE_TRANSITION",
          subject: `agents/${agentId}`,
          description: `allowed from ${AgentState[from]}: ${(allowed[from] ?? []).map((s) => AgentState[s]).join(", ")}`,
        },
      ],
    );
  }
}
