import { AgentTool } from "../agents/agent-tool.entity.ts";
import { Tool } from "../tools/tool.entity.ts";

/** Every entity the ORM knows. */
export const entities = [Tool, AgentTool];
