import {
  AgentStateSchema,
  AgentTypeSchema,
  AgentVisibilitySchema,
  type AgentState,
  type AgentType,
  type AgentVisibility,
} from "../../gen/agentplatform/v1/agent_pb.js";
import { enumCodec } from "../common/enum-codec.ts";

/** How agent enums are stored. */
export const agentType = enumCodec<AgentType>(AgentTypeSchema, "AGENT_TYPE");
export const agentState = enumCodec<AgentState>(AgentStateSchema, "AGENT_STATE");
export const agentVisibility = enumCodec<AgentVisibility>(AgentVisibilitySchema, "AGENT_VISIBILITY");
