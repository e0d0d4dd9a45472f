import type { JsonObject } from "@bufbuild/protobuf";
import { defineEntity, p } from "@mikro-orm/core";
import { newId } from "../common/ids.ts";
import { tenantIdProperty } from "../db/tenant.ts";
import type { StoredPromptTemplate } from "./agent-version.entity.ts";

/** A tenant-owned agent template (built-in ones live in code). */
export const AgentTemplateSchema = defineEntity({
  name: "AgentTemplate",
  tableName: "agent_templates",
  properties: {
    id: p.uuid().primary().onCreate(() => newId()),
    tenantId: tenantIdProperty(),
    name: p.string().length(100),
    description: p.text(),
    agentType: p.string().length(32),
    config: p.json<JsonObject>(),
    systemPrompt: p.text(),
    promptTemplates: p.json<StoredPromptTemplate[]>(),
    createTime: p.datetime().onCreate(() => new Date()),
  },
});

export class AgentTemplate extends AgentTemplateSchema.class {}
AgentTemplateSchema.setClass(AgentTemplate);
