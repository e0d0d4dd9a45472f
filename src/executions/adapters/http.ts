import { createHmac } from "node:crypto";
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

/** POSTs JSON; turns transport failures and HTTP errors into AdapterErrors. */
export async function postJson(
  url: string,
  body: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream, application/x-ndjson", ...headers },
      body,
      signal,
      redirect: "error",
    });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw new AdapterError("UNAVAILABLE", `the agent endpoint could not be reached: ${(err as Error).cause ?? (err as Error).message}`);
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
