import { create } from "@bufbuild/protobuf";
import {
  AgentSchema as AgentMessageSchema,
  AgentState,
  AgentTemplateSchema as AgentTemplateMessageSchema,
  AgentVersionSchema as AgentVersionMessageSchema,
  type Agent as AgentMessage,
  type AgentTemplate as AgentTemplateMessage,
  type AgentVersion as AgentVersionMessage,
} from "../../gen/agentplatform/v1/agent_pb.js";
import { etagOf } from "../common/etag.ts";
import { toTimestamp } from "../common/time.ts";
import type { AgentTemplate } from "./agent-template.entity.ts";
import type { AgentVersion } from "./agent-version.entity.ts";
import type { AgentView } from "./agent.repository.ts";
import type { BuiltinTemplate } from "./builtin-templates.ts";
import { agentState, agentType, agentVisibility } from "./codecs.ts";

/** The API view of an agent with its active version and tools. */
export function toAgentMessage({ agent, active, toolIds, credentialIds }: AgentView): AgentMessage {
  return create(AgentMessageSchema, {
    id: agent.id,
    name: agent.name,
    role: agent.role,
    description: agent.description,
    agentType: agentType.fromDb(agent.agentType),
    state: agent.deleteTime ? AgentState.DELETED : agentState.fromDb(agent.state),
    tags: agent.tags,
    capabilities: agent.capabilities,
    visibility: agentVisibility.fromDb(agent.visibility),
    creator: agent.creator,
    createTime: toTimestamp(agent.createTime),
    updateTime: toTimestamp(agent.updateTime),
    deleteTime: toTimestamp(agent.deleteTime),
    purgeTime: toTimestamp(agent.purgeTime),
    etag: etagOf(agent.version),
    toolIds,
    credentialIds,
    activeVersion: active?.version ?? 0,
    config: active?.config,
    systemPrompt: active?.systemPrompt ?? "",
    promptTemplates: active?.promptTemplates ?? [],
  });
}

/** The API view of a version. */
export function toAgentVersionMessage(v: AgentVersion): AgentVersionMessage {
  return create(AgentVersionMessageSchema, {
    agentId: v.agentId,
    version: v.version,
    config: v.config,
    systemPrompt: v.systemPrompt,
    promptTemplates: v.promptTemplates,
    author: v.author,
    createTime: toTimestamp(v.createTime),
    changeNote: v.changeNote,
    active: v.active,
  });
}

/** The API view of a tenant template. */
export function toTemplateMessage(t: AgentTemplate): AgentTemplateMessage {
  return create(AgentTemplateMessageSchema, {
    id: t.id,
    name: t.name,
    description: t.description,
    agentType: agentType.fromDb(t.agentType),
    config: t.config,
    systemPrompt: t.systemPrompt,
    promptTemplates: t.promptTemplates,
    builtIn: false,
    createTime: toTimestamp(t.createTime),
  });
}

/** The API view of a built-in template. */
export function toBuiltinTemplateMessage(t: BuiltinTemplate): AgentTemplateMessage {
  return create(AgentTemplateMessageSchema, { ...t, builtIn: true });
}
