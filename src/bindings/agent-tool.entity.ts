import { defineEntity, p } from "@mikro-orm/core";
import { tenantIdProperty } from "../db/tenant.ts";

/**
 * The link between an agent and a tool it may call. Kept as plain ids (not
 * ORM relations) so the composite foreign keys in the schema, which include
 * tenant_id, are the single source of referential truth.
 */
export const AgentToolSchema = defineEntity({
  name: "AgentTool",
  tableName: "agent_tools",
  properties: {
    tenantId: tenantIdProperty().primary(),
    agentId: p.uuid().primary(),
    toolId: p.uuid().primary(),
    createTime: p.datetime().onCreate(() => new Date()),
  },
});

export class AgentTool extends AgentToolSchema.class {}
AgentToolSchema.setClass(AgentTool);
