import { AdapterError, type Adapter, type RunRequest } from "./adapter.ts";
import { credentialHeaders, endpointOf, parseJson, postJson } from "./http.ts";
import { sseData } from "./stream-parse.ts";

/** One streamed chat-completions chunk (the fields we read). */
interface ChatChunk {
  model?: string;
  choices?: {
    delta?: {
      content?: string | null;
      tool_calls?: { index?: number; id?: string; function?: { name?: string; arguments?: string } }[];
    };
  }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string };
}

/**
 * OPENAI_COMPATIBLE: the chat-completions API of any OpenAI-compatible server
 * (config.base_url + model), streamed over SSE, with the agent's tools
 * offered as functions. Tool calls are reported, not executed.
 */
export const openAiAdapter: Adapter = async (req) => {
  const base = endpointOf(req.config, "base_url").replace(/\/+$/, "");
  const body = JSON.stringify(chatRequest(req));
  const res = await postJson(req.outbound, `${base}/chat/completions`, body, credentialHeaders(req.credential, body), req.signal);
  if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    throw new AdapterError("UNKNOWN", "the model server did not stream (expected text/event-stream)");
  }
  let response = "";
  let model = req.model;
  let inputTokens = 0;
  let outputTokens = 0;
  const calls = new Map<number, { id: string; name: string; arguments: string }>();
  for await (const data of sseData(res.body!)) {
    if (data === "[DONE]") break;
    const chunk = parseJson(data, "stream chunk") as ChatChunk;
    if (chunk.error) throw new AdapterError("ABORTED", `the model server reported: ${chunk.error.message ?? "error"}`);
    if (chunk.model) model = chunk.model;
    const delta = chunk.choices?.[0]?.delta;
    if (delta?.content) {
      response += delta.content;
      req.emit({ kind: "output", text: delta.content });
    }
    for (const call of delta?.tool_calls ?? []) {
      const slot = calls.get(call.index ?? 0) ?? { id: "", name: "", arguments: "" };
      slot.id ||= call.id ?? "";
      slot.name ||= call.function?.name ?? "";
      slot.arguments += call.function?.arguments ?? "";
      calls.set(call.index ?? 0, slot);
    }
    if (chunk.usage) {
      inputTokens = chunk.usage.prompt_tokens ?? 0;
      outputTokens = chunk.usage.completion_tokens ?? 0;
      req.emit({ kind: "usage", inputTokens, outputTokens });
    }
  }
  for (const call of calls.values()) {
    req.emit({ kind: "tool_call", name: call.name, argumentsJson: call.arguments, callId: call.id });
  }
  return { response, model, inputTokens, outputTokens, testModel: false };
};

function chatRequest(req: RunRequest): Record<string, unknown> {
  const messages = [
    ...(req.systemPrompt ? [{ role: "system", content: req.systemPrompt }] : []),
    { role: "user", content: req.prompt },
  ];
  const params = typeof req.config.parameters === "object" && req.config.parameters !== null ? req.config.parameters : {};
  return {
    ...params,
    model: req.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    ...(req.tools.length > 0
      ? {
          tools: req.tools.map((t) => ({
            type: "function",
            function: { name: t.name, description: t.description, parameters: t.parameters ?? { type: "object", properties: {} } },
          })),
        }
      : {}),
  };
}
