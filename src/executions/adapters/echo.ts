import type { Adapter } from "./adapter.ts";

/**
 * The built-in `echo` test model: answers with the prompt, word by word, so
 * the platform can be tried offline. Results are flagged `test_model`.
 */
export const echoAdapter: Adapter = async (req) => {
  const words = req.prompt.match(/\s*\S+\s*/g) ?? [];
  for (const word of words) {
    if (req.signal.aborted) break;
    req.emit({ kind: "output", text: word });
  }
  req.signal.throwIfAborted();
  const inputTokens = countTokens(req.systemPrompt) + countTokens(req.prompt);
  const outputTokens = countTokens(req.prompt);
  req.emit({ kind: "usage", inputTokens, outputTokens });
  return { response: req.prompt, model: "echo", inputTokens, outputTokens, testModel: true };
};

// A stand-in tokenizer: whitespace-separated words.
function countTokens(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}
