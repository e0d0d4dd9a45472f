import { createHmac } from "node:crypto";
import { OutboundAddressRefused, type Outbound } from "../../common/outbound.ts";
import { AdapterError, type AppliedCredential } from "./adapter.ts";

/** Headers that carry a credential as the endpoint expects it. */
export function credentialHeaders(credential: AppliedCredential | undefined, body: string): Record<string, string> {
  if (!credential) return {};
  switch (credential.kind) {
    case "bearer":
      return { authorization: `Bearer ${credential.token}` };
    case "api_key":
      return { [credential.headerName || "x-api-key"]: credential.apiKey };
    case "basic":
      return {
        authorization: `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString("base64")}`,
      };
    case "webhook_secret": {
      const timestamp = Math.floor(Date.now() / 1000).toString();
      const signature = createHmac("sha256", credential.secret).update(`${timestamp}.${body}`).digest("hex");
      return { "x-agentplatform-timestamp": timestamp, "x-agentplatform-signature": `v1=${signature}` };
    }
  }
}

/**
 * POSTs JSON through `outbound` (the address rule; redirects not followed);
 * turns refusals, transport failures and HTTP errors into AdapterErrors.
 */
export async function postJson(
  outbound: Outbound,
  url: string,
  body: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<Response> {
  let res: Response;
  try {
    res = (await outbound.fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream, application/x-ndjson", ...headers },
      body,
      signal,
    })) as unknown as Response;
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    if (err instanceof OutboundAddressRefused) {
      // The reason leads the message, so callers can tell it from a network failure.
      throw new AdapterError("PERMISSION_DENIED", `OUTBOUND_ADDRESS_REFUSED: ${err.message} (the agent endpoint)`);
    }
    throw new AdapterError("UNAVAILABLE", `the agent endpoint could not be reached: ${(err as Error).cause ?? (err as Error).message}`);
  }
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel().catch(() => {});
    // Following it would reach an address the rule never checked.
    throw new AdapterError("FAILED_PRECONDITION", `the agent endpoint answered HTTP ${res.status} (a redirect); redirects are not followed`);
  }
  if (!res.ok) {
    const text = (await res.text().catch(() => "")).slice(0, 500);
    throw new AdapterError(codeForStatus(res.status), `the agent endpoint answered HTTP ${res.status}`, text);
  }
  return res;
}

function codeForStatus(status: number): string {
  if (status === 429 || status >= 500) return "UNAVAILABLE";
  if (status === 401 || status === 403) return "PERMISSION_DENIED";
  if (status === 404) return "NOT_FOUND";
  return "FAILED_PRECONDITION";
}

/** Parses JSON from an agent, as an AdapterError when it is not JSON. */
export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new AdapterError("UNKNOWN", `the agent's ${what} is not valid JSON`, text.slice(0, 500));
  }
}

/** The endpoint URL from a config key, or a FAILED_PRECONDITION-style error. */
export function endpointOf(config: Record<string, unknown>, key: string): string {
  const value = config[key];
  if (typeof value !== "string" || !/^https?:\/\//.test(value)) {
    throw new AdapterError("FAILED_PRECONDITION", `the agent's config needs an http(s) "${key}"`);
  }
  return value;
}
