import type { JsonObject } from "@bufbuild/protobuf";
import { defineEntity, p } from "@mikro-orm/core";
import { tenantIdProperty } from "../db/tenant.ts";

/** A named prompt template as stored (jsonb). */
export interface StoredPromptTemplate {
  name: string;
  template: string;
}

/**
 * An immutable version of an agent's behaviour. Rows are only ever inserted,
 * and `active` flipped; the partial unique index in the schema allows one
 * active version per agent.
 */
export const AgentVersionSchema = defineEntity({
  name: "AgentVersion",
  tableName: "agent_versions",
  properties: {
    tenantId: tenantIdProperty().primary(),
    agentId: p.uuid().primary(),
    version: p.integer().primary(),
    config: p.json<JsonObject>(),
    systemPrompt: p.text(),
    promptTemplates: p.json<StoredPromptTemplate[]>(),
    author: p.string().length(256),
    changeNote: p.text(),
    active: p.boolean(),
    createTime: p.datetime().onCreate(() => new Date()),
  },
});

export class AgentVersion extends AgentVersionSchema.class {}
AgentVersionSchema.setClass(AgentVersion);
