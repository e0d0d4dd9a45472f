import { defineEntity, p } from "@mikro-orm/core";
import { newId } from "../common/ids.ts";
import { tenantIdProperty } from "../db/tenant.ts";

/**
 * An agent. Its behaviour (config, prompts) lives in AgentVersion rows; this
 * row holds identity, lifecycle and labels. "Deleted" is `deleteTime` being
 * set: `state` keeps the lifecycle state to return to on undelete.
 */
export const AgentSchema = defineEntity({
  name: "Agent",
  tableName: "agents",
  properties: {
    id: p.uuid().primary().onCreate(() => newId()),
    tenantId: tenantIdProperty(),
    name: p.string().length(100),
    role: p.string().length(100),
    description: p.text(),
    agentType: p.string().length(32),
    state: p.string().length(16),
    tags: p.array().columnType("text[]"),
    capabilities: p.array().columnType("text[]"),
    visibility: p.string().length(16),
    creator: p.string().length(256),
    createTime: p.datetime().onCreate(() => new Date()),
    updateTime: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
    deleteTime: p.datetime().nullable(),
    purgeTime: p.datetime().nullable(),
    version: p.integer().version(),
  },
});

export class Agent extends AgentSchema.class {}
AgentSchema.setClass(Agent);
