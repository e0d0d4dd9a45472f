/** Price of a model in US dollars per million tokens (= micro-dollars per token). */
export interface ModelPrice {
  input: number;
  output: number;
}

/** Model name → price. */
export type PriceTable = Record<string, ModelPrice>;

/** Parses MODEL_PRICES: JSON `{"model": {"input": 0.15, "output": 0.6}}`, USD per million tokens. */
export function parsePrices(json: string | undefined): PriceTable {
  if (!json) return {};
  const parsed = JSON.parse(json) as unknown;
  if (typeof parsed !== "object" || parsed === null) throw new Error("MODEL_PRICES must be a JSON object");
  for (const [model, price] of Object.entries(parsed)) {
    const p = price as Partial<ModelPrice>;
    if (typeof p.input !== "number" || typeof p.output !== "number" || p.input < 0 || p.output < 0) {
      throw new Error(`MODEL_PRICES.${model} needs non-negative numbers "input" and "output"`);
    }
  }
  return parsed as PriceTable;
}

/** Cost in micro-USD of a run; unknown models cost 0. */
export function costMicros(prices: PriceTable, model: string, inputTokens: number, outputTokens: number): number {
  const price = prices[model];
  return price ? Math.round(inputTokens * price.input + outputTokens * price.output) : 0;
}
