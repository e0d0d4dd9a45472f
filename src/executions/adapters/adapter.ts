import type { JsonObject } from "@bufbuild/protobuf";
import type { Outbound } from "../../common/outbound.ts";

/** A secret an adapter applies to its outbound request (from CredentialService). */
export type AppliedCredential =
  | { kind: "api_key"; apiKey: string; headerName: string }
  | { kind: "bearer"; token: string }
  | { kind: "basic"; username: string; password: string }
  | { kind: "webhook_secret"; secret: string };

/** Everything an adapter needs to run one execution. */
export interface RunRequest {
  executionId: string;
  parentExecutionId: string;
  agent: { id: string; name: string; type: string; version: number };
  /** The version's config: endpoint, base_url, model, timeout_ms, parameters… */
  config: JsonObject;
  systemPrompt: string;
  prompt: string;
  input: JsonObject | undefined;
  /** The model to use (request override, else config.model). */
  model: string;
  sessionId: string;
  /** The agent's tools, offered to the model as functions. */
  tools: { name: string; description: string; parameters: JsonObject | null }[];
  credential: AppliedCredential | undefined;
  /** Reaches the tenant's endpoint: every call to a URL from `config` goes through it. */
  outbound: Outbound;
  /** Aborted on cancel, timeout or shutdown; adapters pass it to fetch. */
  signal: AbortSignal;
  /** Streams progress while the run goes on. */
  emit(event: RunEvent): void;
}

/** Progress an adapter reports while running. */
export type RunEvent =
  | { kind: "output"; text: string }
  | { kind: "tool_call"; name: string; argumentsJson: string; callId: string }
  | { kind: "usage"; inputTokens: number; outputTokens: number };

/** What a finished run produced. */
export interface RunResult {
  response: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  /** True for the built-in echo model. */
  testModel: boolean;
}

/** Runs an agent through one kind of endpoint. */
export type Adapter = (req: RunRequest) => Promise<RunResult>;

/**
 * A failure of the agent's endpoint, recorded on the execution (never an RPC
 * error of the platform itself). `code` is a gRPC code name.
 */
export class AdapterError extends Error {
  readonly code: string;
  readonly detail: string;

  constructor(code: string, message: string, detail = "") {
    super(message);
    this.name = "AdapterError";
    this.code = code;
    this.detail = detail;
  }
}
