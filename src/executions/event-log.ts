import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ExecutionEventSchema, type ExecutionEvent } from "../../gen/agentplatform/v1/execution_pb.js";

/** What an event carries, without its sequence, id and time. */
export type EventBody = MessageInitShape<typeof ExecutionEventSchema>["event"];

/**
 * The events of one running execution, in memory on the instance that runs
 * it: numbered, kept for the life of the run so a stream can start or resume
 * at any sequence, and handed out in batches for persistence.
 */
export class EventLog {
  readonly executionId: string;
  readonly #events: ExecutionEvent[] = [];
  #unsaved: ExecutionEvent[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;

  constructor(executionId: string) {
    this.executionId = executionId;
  }

  /** Appends an event and wakes followers. */
  append(event: EventBody): ExecutionEvent {
    const message = create(ExecutionEventSchema, {
      sequence: BigInt(this.#events.length + 1),
      executionId: this.executionId,
      time: timestampNow(),
      event,
    });
    this.#events.push(message);
    this.#unsaved.push(message);
    this.#wake();
    return message;
  }

  /** Events not yet handed to persistence; each is handed out once. */
  takeUnsaved(): ExecutionEvent[] {
    const batch = this.#unsaved;
    this.#unsaved = [];
    return batch;
  }

  /** Puts back a batch whose write failed, to be handed out again. */
  requeue(batch: ExecutionEvent[]): void {
    this.#unsaved = [...batch, ...this.#unsaved];
  }

  /** No more events will come. */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  /** Every event after `afterSequence`, then each new one, until the log closes or `signal` aborts. */
  async *follow(afterSequence: number, signal: AbortSignal): AsyncGenerator<ExecutionEvent> {
    let next = Math.max(0, afterSequence);
    for (;;) {
      while (next < this.#events.length) {
        yield this.#events[next++]!;
      }
      if (this.#closed || signal.aborted) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.#waiters.push(done);
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
