import type { Adapter } from "./adapter.ts";
import { echoAdapter } from "./echo.ts";
import { openAiAdapter } from "./openai.ts";
import { webhookAdapter } from "./webhook.ts";

/** The name of the built-in test model. */
export const ECHO_MODEL = "echo";

/**
 * Which adapter runs an agent: the echo model runs anything offline;
 * OPENAI_COMPATIBLE speaks chat completions; every other type is reached
 * through its webhook endpoint.
 */
export function adapterFor(agentType: string, model: string): Adapter {
  if (model === ECHO_MODEL) return echoAdapter;
  if (agentType === "OPENAI_COMPATIBLE") return openAiAdapter;
  return webhookAdapter;
}
