import { createHash } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { ExecutionInput } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { AgentTool } from "../bindings/agent-tool.entity.ts";
import { AgentRepository } from "../agents/agent.repository.ts";
import { emOf, principalOf } from "../call-context.ts";
import { AlreadyExistsError, FailedPreconditionError, QuotaExceededError } from "../common/errors.ts";
import type { Outbound } from "../common/outbound.ts";
import type { Quotas } from "../tenants/quotas.ts";
import { requireFeature } from "../tenants/toggles.ts";
import { Tool } from "../tools/tool.entity.ts";
import type { AppliedCredential } from "./adapters/adapter.ts";
import { adapterFor, ECHO_MODEL } from "./adapters/index.ts";
import { Execution } from "./execution.entity.ts";
import { ExecutionRepository } from "./execution.repository.ts";
import type { ExecutionRunner, LocalRun } from "./runner.ts";
import type { EntityManager } from "@mikro-orm/postgresql";

/** Finds the credential an agent's run applies (CredentialService), if any. */
export type CredentialLookup = (em: EntityManager, agentId: string, config: JsonObject) => Promise<AppliedCredential | undefined>;

/** What starting an execution needs besides the request. */
export interface StartDeps {
  runner: ExecutionRunner;
  instanceId: string;
  /** Timeout of a run whose config sets none, in ms. */
  defaultTimeoutMs: number;
  /** Deadline of a unary call whose client sent none (the run must end before it). */
  defaultDeadlineMs: number;
  credentials: CredentialLookup;
  /** Executions queued or running at once are bounded per tenant. */
  quotas: Quotas;
  /** How runs reach their endpoints (the outbound address rule). */
  outbound: Outbound;
}

/** A started (or, for a repeated request_id, earlier) execution. */
export interface Started {
  execution: Execution;
  /** The run, when this instance runs it. */
  run: LocalRun | undefined;
}

// Time kept between a run's timeout and the RPC deadline, to answer in time.
const DEADLINE_MARGIN_MS = 250;

/**
 * Validates and stores a new execution and starts it in the background. A
 * repeated request_id returns the first execution (it never runs twice); the
 * same request_id with a different request is ALREADY_EXISTS.
 */
export async function startExecution(ctx: HandlerContext, input: ExecutionInput, deps: StartDeps): Promise<Started> {
  const em = emOf(ctx);
  const principal = principalOf(ctx);
  await requireFeature(em, "executions.enabled");
  if (ctx.method.methodKind === "server_streaming") await requireFeature(em, "executions.streaming");
  const executions = new ExecutionRepository(em);
  const requestHash = hashOf(input);
  if (input.requestId) {
    const earlier = await executions.findByRequestId(input.requestId);
    if (earlier) return repeated(earlier, requestHash, deps);
  }

  const agents = new AgentRepository(em, principal);
  const agent = await agents.getLive(input.agentId);
  if (agent.state !== "ACTIVE") {
    throw new FailedPreconditionError(`the agent is ${agent.state}, not ACTIVE`, "AGENT_NOT_ACTIVE", [
      { type: "AGENT_STATE", subject: `agents/${agent.id}`, description: "set the agent's state to ACTIVE to run it" },
    ]);
  }
  const version = input.agentVersion
    ? await agents.version(agent.id, input.agentVersion)
    : (await agents.view(agent)).active;
  if (!version) throw new FailedPreconditionError("the agent has no active version", "NO_ACTIVE_VERSION");
  if (input.parentExecutionId) await executions.get(input.parentExecutionId);

  const config = version.config;
  const model = input.model || (typeof config.model === "string" ? config.model : "");
  // Resolved before anything is stored: an unusable credential is the
  // caller's FAILED_PRECONDITION, not a failed run.
  const credential = model === ECHO_MODEL ? undefined : await deps.credentials(em, agent.id, config);
  const { execution, created } = await insertWithinQuota(em, deps, {
    agentId: agent.id,
    agentVersion: version.version,
    parentExecutionId: input.parentExecutionId || null,
    sessionId: input.sessionId,
    status: "QUEUED",
    prompt: input.prompt,
    input: input.input ?? null,
    model,
    response: "",
    inputTokens: 0,
    outputTokens: 0,
    costMicros: 0,
    errorCode: "",
    errorMessage: "",
    errorDetail: "",
    requestId: input.requestId || null,
    requestHash,
    creator: principal.subject,
    testModel: model === ECHO_MODEL,
    instanceId: deps.instanceId,
  });
  if (!created) return repeated(execution, requestHash, deps);

  const links = await em.find(AgentTool, { agentId: agent.id });
  const tools = links.length ? await em.find(Tool, { id: { $in: links.map((l) => l.toolId) } }, { orderBy: { name: "asc" } }) : [];
  const run = deps.runner.start(em, execution, {
    adapter: adapterFor(agent.agentType, model),
    timeoutMs: timeoutOf(config, ctx, deps),
    executionId: execution.id,
    parentExecutionId: input.parentExecutionId,
    agent: { id: agent.id, name: agent.name, type: agent.agentType, version: version.version },
    config,
    systemPrompt: version.systemPrompt,
    prompt: input.prompt,
    input: input.input,
    model,
    sessionId: input.sessionId,
    tools: tools.map((t) => ({ name: t.name, description: t.description, parameters: t.parameters ?? null })),
    credential,
    outbound: deps.outbound,
  });
  return { execution, run };
}

/**
 * Stores a QUEUED execution within the tenant's concurrency quota. The quota
 * check locks the tenant's settings row until the insert commits, so every
 * start of the tenant counts after the one before it has committed: two
 * starts at quota-1 cannot both pass, and a run with the same request_id
 * committed meanwhile is found here rather than inserted twice.
 */
async function insertWithinQuota(
  em: EntityManager,
  deps: StartDeps,
  fields: Partial<Execution>,
): Promise<{ execution: Execution; created: boolean }> {
  try {
    return await em.transactional(async (tx) => {
      await deps.quotas.reserve(tx, "concurrentExecutions");
      const earlier = fields.requestId ? await tx.findOne(Execution, { requestId: fields.requestId }) : null;
      if (earlier) return { execution: earlier, created: false };
      return new ExecutionRepository(tx).insert(fields);
    });
  } catch (err) {
    // A retry of a run that was started is answered with that run, even at the quota.
    const earlier = err instanceof QuotaExceededError && fields.requestId
      ? await new ExecutionRepository(em).findByRequestId(fields.requestId)
      : null;
    if (earlier) return { execution: earlier, created: false };
    throw err;
  }
}

function repeated(earlier: Execution, requestHash: string, deps: StartDeps): Started {
  if (earlier.requestHash !== requestHash) {
    throw new AlreadyExistsError(
      "this request_id was used for a different request",
      "REQUEST_ID_REUSED",
      { execution_id: earlier.id },
    );
  }
  return { execution: earlier, run: deps.runner.local(earlier.id) };
}

/** The run's timeout: its config's `timeout_ms`, capped by the RPC's deadline. */
function timeoutOf(config: JsonObject, ctx: HandlerContext, deps: StartDeps): number {
  const configured = typeof config.timeout_ms === "number" && config.timeout_ms > 0 ? config.timeout_ms : deps.defaultTimeoutMs;
  const rpc = ctx.timeoutMs() ?? (ctx.method.methodKind === "unary" ? deps.defaultDeadlineMs : undefined);
  return Math.max(1, rpc === undefined ? configured : Math.min(configured, rpc - DEADLINE_MARGIN_MS));
}

function hashOf(input: ExecutionInput): string {
  const { agentId, prompt, input: structured, model, agentVersion, sessionId, parentExecutionId } = input;
  return createHash("sha256")
    .update(JSON.stringify({ agentId, prompt, structured, model, agentVersion, sessionId, parentExecutionId }))
    .digest("hex");
}
