import { AdapterError, type Adapter, type RunRequest, type RunResult } from "./adapter.ts";
import { credentialHeaders, endpointOf, parseJson, postJson } from "./http.ts";
import { ndjson, sseData } from "./stream-parse.ts";

/**
 * The JSON envelope POSTed to webhook-style agents (README: "Webhook
 * envelope"). Versioned by `type` so receivers can evolve.
 */
export function envelope(req: RunRequest): Record<string, unknown> {
  return {
    type: "agentplatform.execution.v1",
    execution_id: req.executionId,
    parent_execution_id: req.parentExecutionId,
    agent: req.agent,
    session_id: req.sessionId,
    model: req.model,
    system_prompt: req.systemPrompt,
    prompt: req.prompt,
    input: req.input ?? null,
    parameters: req.config.parameters ?? null,
    tools: req.tools,
  };
}

/** One message of a webhook's answer, as JSON, SSE data or an NDJSON line. */
interface WebhookMessage {
  output?: unknown;
  response?: unknown;
  tool_call?: { name?: unknown; arguments?: unknown; id?: unknown };
  usage?: { input_tokens?: unknown; output_tokens?: unknown };
  model?: unknown;
  error?: unknown;
}

/**
 * WEBHOOK and every framework registered with an endpoint (LangChain,
 * LangGraph, CrewAI, n8n, Make, Zapier, custom): POST the envelope; the answer
 * is one JSON object, or a stream of them as SSE or NDJSON.
 */
export const webhookAdapter: Adapter = async (req) => {
  const url = endpointOf(req.config, "endpoint");
  const body = JSON.stringify(envelope(req));
  const res = await postJson(
    req.outbound,
    url,
    body,
    { "x-agentplatform-execution-id": req.executionId, ...credentialHeaders(req.credential, body) },
    req.signal,
  );
  const type = res.headers.get("content-type") ?? "";
  const result: RunResult = { response: "", model: req.model, inputTokens: 0, outputTokens: 0, testModel: false };
  if (type.startsWith("text/event-stream") || type.startsWith("application/x-ndjson")) {
    const messages = type.startsWith("text/event-stream") ? sseData(res.body!) : ndjson(res.body!);
    for await (const data of messages) {
      if (data === "[DONE]") break;
      apply(parseJson(data, "stream event") as WebhookMessage, req, result, true);
    }
  } else if (type.startsWith("application/json")) {
    apply(parseJson(await res.text(), "response") as WebhookMessage, req, result, false);
  } else {
    result.response = await res.text();
    if (result.response) req.emit({ kind: "output", text: result.response });
  }
  return result;
};

function apply(message: WebhookMessage, req: RunRequest, result: RunResult, streaming: boolean): void {
  if (typeof message !== "object" || message === null) {
    throw new AdapterError("UNKNOWN", "the agent's answer is not a JSON object");
  }
  if (message.error !== undefined) {
    throw new AdapterError("ABORTED", `the agent reported an error: ${String(message.error).slice(0, 500)}`);
  }
  const text = message.output ?? message.response;
  if (text !== undefined) {
    if (typeof text !== "string") throw new AdapterError("UNKNOWN", "the agent's output is not a string");
    result.response = streaming ? result.response + text : text;
    if (text !== "") req.emit({ kind: "output", text });
  }
  if (message.tool_call) {
    const call = message.tool_call;
    req.emit({
      kind: "tool_call",
      name: String(call.name ?? ""),
      argumentsJson: typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments ?? {}),
      callId: String(call.id ?? ""),
    });
  }
  if (message.usage) {
    result.inputTokens = count(message.usage.input_tokens);
    result.outputTokens = count(message.usage.output_tokens);
    req.emit({ kind: "usage", inputTokens: result.inputTokens, outputTokens: result.outputTokens });
  }
  if (typeof message.model === "string" && message.model !== "") result.model = message.model;
}

function count(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.floor(value) : 0;
}
