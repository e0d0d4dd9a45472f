import type { JsonObject } from "@bufbuild/protobuf";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import type { StoredPromptTemplate } from "./agent-version.entity.ts";

/** A template shipped with the service. */
export interface BuiltinTemplate {
  id: string;
  name: string;
  description: string;
  agentType: AgentType;
  config: JsonObject;
  systemPrompt: string;
  promptTemplates: StoredPromptTemplate[];
}

/** Templates every tenant sees, ahead of its own. Ids are stable names, not UUIDs. */
export const builtinTemplates: readonly BuiltinTemplate[] = [
  {
    id: "builtin-echo",
    name: "Echo test agent",
    description: "Answers with its input through the built-in echo test model; runs offline.",
    agentType: AgentType.CUSTOM,
    config: { model: "echo" },
    systemPrompt: "",
    promptTemplates: [],
  },
  {
    id: "builtin-openai-chat",
    name: "OpenAI-compatible chat agent",
    description: "Chat completions against any OpenAI-compatible server; set base_url, model and a credential.",
    agentType: AgentType.OPENAI_COMPATIBLE,
    config: { base_url: "https://api.openai.com/v1", model: "gpt-4o-mini", temperature: 0.2 },
    systemPrompt: "You are a helpful assistant.",
    promptTemplates: [],
  },
  {
    id: "builtin-webhook",
    name: "Webhook agent",
    description: "POSTs the platform's JSON envelope to an HTTP endpoint; set endpoint (and a credential to sign or authorize).",
    agentType: AgentType.WEBHOOK,
    config: { endpoint: "https://example.com/agent", timeout_ms: 30000 },
    systemPrompt: "",
    promptTemplates: [],
  },
];

/** The built-in template with this id, if any. */
export function builtinTemplate(id: string): BuiltinTemplate | undefined {
  return builtinTemplates.find((t) => t.id === id);
}
