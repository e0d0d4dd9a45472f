import { toJson } from "@bufbuild/protobuf";
import type { EntityManager } from "@mikro-orm/postgresql";
import { ExecutionEventSchema } from "../../gen/agentplatform/v1/execution_pb.js";
import type { Logger } from "../log.ts";
import { AdapterError, type Adapter, type RunRequest } from "./adapters/adapter.ts";
import { UNFINISHED } from "./codecs.ts";
import { ExecutionEvent } from "./execution-event.entity.ts";
import { Execution } from "./execution.entity.ts";
import { toExecutionMessage } from "./execution.mapper.ts";
import { EventLog } from "./event-log.ts";
import { costMicros, type PriceTable } from "./prices.ts";

/** Why a run was stopped before it finished. */
export class RunAbort extends Error {
  readonly kind: "cancel" | "timeout" | "shutdown";

  constructor(kind: "cancel" | "timeout" | "shutdown") {
    super(`execution stopped: ${kind}`);
    this.name = "RunAbort";
    this.kind = kind;
  }
}

/** A run in progress on this instance. */
export interface LocalRun {
  log: EventLog;
  /** Settles when the execution row holds its terminal status. */
  done: Promise<void>;
  controller: AbortController;
}

/** What the runner needs. */
export interface RunnerOptions {
  logger: Logger;
  /** Identifies this server process in executions it runs (orphan recovery). */
  instanceId: string;
  prices: PriceTable;
  /** How often running executions record that they are alive. */
  heartbeatMs: number;
  /** How often streamed events are written to the database. */
  eventFlushMs: number;
}

/** What to run: the adapter and its request, minus what the runner supplies. */
export type RunPlan = Omit<RunRequest, "signal" | "emit"> & { adapter: Adapter; timeoutMs: number };

/**
 * Runs executions in the background of this process, detached from the RPC
 * that started them: a client that goes away does not stop a run; cancel,
 * timeout and shutdown do. Each run writes through its own fork of the
 * starting request's EntityManager, so it stays within that tenant.
 */
export class ExecutionRunner {
  readonly #runs = new Map<string, LocalRun>();
  readonly #options: RunnerOptions;
  // Queries of a run must outlive the RPC that started it.
  readonly #neverAborted = new AbortController().signal;

  constructor(options: RunnerOptions) {
    this.#options = options;
  }

  /** The run of `executionId` if this instance runs it. */
  local(executionId: string): LocalRun | undefined {
    return this.#runs.get(executionId);
  }

  /** Stops a local run as cancelled; false when this instance does not run it. */
  cancelLocal(executionId: string): boolean {
    const run = this.#runs.get(executionId);
    run?.controller.abort(new RunAbort("cancel"));
    return run !== undefined;
  }

  /** Number of runs in progress here. */
  get size(): number {
    return this.#runs.size;
  }

  /** Starts a QUEUED execution, already stored by `requestEm`. */
  start(requestEm: EntityManager, execution: Execution, plan: RunPlan): LocalRun {
    const controller = new AbortController();
    const log = new EventLog(execution.id);
    const em = requestEm.fork({ signal: this.#neverAborted });
    const run: LocalRun = { log, controller, done: Promise.resolve() };
    run.done = this.#run(em, execution, plan, run).finally(() => this.#runs.delete(execution.id));
    this.#runs.set(execution.id, run);
    return run;
  }

  /**
   * Lets runs finish for up to `graceMs`, then stops the rest; each ends
   * FAILED with a clear reason rather than staying RUNNING.
   */
  async shutdown(graceMs: number): Promise<void> {
    const all = () => Promise.allSettled([...this.#runs.values()].map((r) => r.done));
    const timer = setTimeout(() => {
      for (const run of this.#runs.values()) run.controller.abort(new RunAbort("shutdown"));
    }, graceMs);
    await all();
    clearTimeout(timer);
  }

  async #run(em: EntityManager, execution: Execution, plan: RunPlan, run: LocalRun): Promise<void> {
    const { logger, instanceId, prices, heartbeatMs, eventFlushMs } = this.#options;
    const timer = setTimeout(() => run.controller.abort(new RunAbort("timeout")), plan.timeoutMs);
    const startTime = new Date();
    let firstOutput: number | undefined;
    // Event writes are chained so the final one waits for a periodic one in flight.
    let saving = Promise.resolve();
    const save = () => (saving = saving.then(() => this.#saveEvents(em, run.log)));
    const flushing = setInterval(() => void save(), eventFlushMs);
    // The heartbeat also notices a cancel whose notification never arrived:
    // a row that is no longer RUNNING stops the run.
    const beating = setInterval(() => {
      em.fork()
        .nativeUpdate(Execution, { id: execution.id, status: "RUNNING" }, { heartbeatTime: new Date() })
        .then((n) => n === 0 && execution.status === "RUNNING" && run.controller.abort(new RunAbort("cancel")))
        .catch((error: unknown) => logger.warn("heartbeat failed", { executionId: execution.id, error }));
    }, heartbeatMs);
    try {
      const started = await em.nativeUpdate(
        Execution,
        { id: execution.id, status: "QUEUED" },
        { status: "RUNNING", startTime, heartbeatTime: startTime, instanceId },
      );
      if (started === 0) return; // cancelled before it started
      Object.assign(execution, { status: "RUNNING", startTime });
      run.log.append({ case: "started", value: { execution: toExecutionMessage(execution, { admin: false }) } });

      let outcome: Partial<Execution>;
      try {
        const result = await plan.adapter({
          ...plan,
          signal: run.controller.signal,
          emit: (event) => {
            if (run.controller.signal.aborted) return;
            if (event.kind === "output") {
              firstOutput ??= Date.now();
              run.log.append({ case: "output", value: { text: event.text } });
            } else if (event.kind === "tool_call") {
              run.log.append({ case: "toolCall", value: { name: event.name, argumentsJson: event.argumentsJson, callId: event.callId } });
            } else {
              run.log.append({
                case: "usage",
                value: { inputTokens: BigInt(event.inputTokens), outputTokens: BigInt(event.outputTokens) },
              });
            }
          },
        });
        run.controller.signal.throwIfAborted();
        outcome = {
          status: "SUCCEEDED",
          response: result.response,
          model: result.model,
          inputTokens: result.inputTokens,
          outputTokens: result.outputTokens,
          costMicros: costMicros(prices, result.model, result.inputTokens, result.outputTokens),
          testModel: result.testModel,
        };
      } catch (err) {
        outcome = failure(run.controller.signal.reason ?? err, err);
        if (outcome.errorCode === "INTERNAL") logger.error("execution failed unexpectedly", { executionId: execution.id, error: err });
      }
      const endTime = new Date();
      const final = {
        ...outcome,
        endTime,
        latencyMs: endTime.getTime() - startTime.getTime(),
        timeToFirstOutputMs: firstOutput === undefined ? null : firstOutput - startTime.getTime(),
      };
      // Only an unfinished execution can finish: a cancel that won the race keeps its status.
      await em.nativeUpdate(Execution, { id: execution.id, status: { $in: UNFINISHED } }, final);
    } catch (err) {
      logger.error("execution bookkeeping failed", { executionId: execution.id, error: err });
    } finally {
      clearTimeout(timer);
      clearInterval(flushing);
      clearInterval(beating);
      const stored = await em.fork().findOne(Execution, { id: execution.id }).catch(() => null);
      if (stored) run.log.append({ case: "completed", value: toExecutionMessage(stored, { admin: false }) });
      run.log.close();
      await save();
      // One more try for a batch put back by a failed write.
      await save();
    }
  }

  // Writes the events streamed since the last call; on failure the batch is
  // put back and written with the next one, rather than failing the run.
  async #saveEvents(em: EntityManager, log: EventLog): Promise<void> {
    const batch = log.takeUnsaved();
    if (batch.length === 0) return;
    const fork = em.fork();
    for (const event of batch) {
      fork.create(ExecutionEvent, {
        executionId: log.executionId,
        sequence: Number(event.sequence),
        event: toJson(ExecutionEventSchema, event) as ExecutionEvent["event"],
      } as ExecutionEvent);
    }
    try {
      await fork.flush();
    } catch (error) {
      log.requeue(batch);
      this.#options.logger.error("could not store execution events", { executionId: log.executionId, error });
    }
  }
}

/** The terminal fields of a run that did not succeed. */
function failure(reason: unknown, err: unknown): Partial<Execution> {
  if (reason instanceof RunAbort) {
    if (reason.kind === "timeout") {
      return { status: "TIMED_OUT", errorCode: "DEADLINE_EXCEEDED", errorMessage: "the execution ran past its timeout" };
    }
    if (reason.kind === "cancel") {
      return { status: "CANCELLED", errorCode: "CANCELLED", errorMessage: "the execution was cancelled" };
    }
    return { status: "FAILED", errorCode: "UNAVAILABLE", errorMessage: "the server shut down while the execution ran" };
  }
  if (err instanceof AdapterError) {
    return { status: "FAILED", errorCode: err.code, errorMessage: err.message, errorDetail: err.detail };
  }
  return {
    status: "FAILED",
    errorCode: "INTERNAL",
    errorMessage: "the execution failed with an internal error",
    errorDetail: err instanceof Error ? (err.stack ?? err.message) : String(err),
  };
}
