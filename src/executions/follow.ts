import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ExecutionEventSchema, type ExecutionEvent } from "../../gen/agentplatform/v1/execution_pb.js";
import { toTimestamp } from "../common/time.ts";
import { isTerminal } from "./codecs.ts";
import { toExecutionMessage } from "./execution.mapper.ts";
import type { Execution } from "./execution.entity.ts";
import type { ExecutionRepository } from "./execution.repository.ts";
import type { LocalRun } from "./runner.ts";

// How often an execution running elsewhere is polled.
const POLL_MS = 200;
// How long a terminal execution's `completed` event is waited for.
const COMPLETED_WAIT_MS = 1000;

/**
 * The events of an execution after `afterSequence`, until it completes:
 * live from memory when this instance runs it, otherwise from the stored
 * events, polling while another instance is still running it.
 */
export async function* followExecution(
  repo: ExecutionRepository,
  executionId: string,
  run: LocalRun | undefined,
  afterSequence: number,
  signal: AbortSignal,
): AsyncGenerator<ExecutionEvent> {
  if (run) {
    yield* run.log.follow(afterSequence, signal);
    return;
  }
  let last = afterSequence;
  let terminalSince: number | undefined;
  while (!signal.aborted) {
    for (const stored of await repo.eventsAfter(executionId, last)) {
      const event = fromJson(ExecutionEventSchema, stored.event as JsonValue);
      last = Number(event.sequence);
      yield event;
      if (event.event.case === "completed") return;
    }
    const execution = await repo.reload(executionId);
    if (isTerminal(execution.status)) {
      // The runner stores its last events and `completed` just after the
      // row turns terminal; a run closed by crash recovery stores none. Wait
      // a little for them, then end with a `completed` made from the row.
      terminalSince ??= Date.now();
      if (Date.now() - terminalSince >= COMPLETED_WAIT_MS) {
        yield completedFromRow(execution, last + 1);
        return;
      }
    }
    await sleep(POLL_MS, signal);
  }
}

function completedFromRow(execution: Execution, sequence: number): ExecutionEvent {
  return create(ExecutionEventSchema, {
    sequence: BigInt(sequence),
    executionId: execution.id,
    time: toTimestamp(execution.endTime ?? new Date()),
    event: { case: "completed", value: toExecutionMessage(execution, { admin: false }) },
  });
}

/** The execution once it is terminal (waiting for a local run, or polling one elsewhere). */
export async function finished(
  repo: ExecutionRepository,
  executionId: string,
  run: LocalRun | undefined,
  signal: AbortSignal,
): Promise<Execution> {
  if (run) await run.done;
  for (;;) {
    const execution = await repo.reload(executionId);
    if (isTerminal(execution.status)) return execution;
    signal.throwIfAborted();
    await sleep(POLL_MS, signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
