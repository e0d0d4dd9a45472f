import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";

/** Serving state of the whole server, as grpc.health.v1 reports it. */
export interface HealthState {
  /**
   * Marks the server started (true) or stopping (false). Every service is
   * SERVING while it is started and its database answers.
   */
  setServing(serving: boolean): void;
  /** Records whether the database answers (the database probe); watchers wake on a change. */
  setDatabaseReachable(reachable: boolean): void;
  /** Ends every Watch stream (on shutdown). */
  close(): void;
  /** The grpc.health.v1.Health implementation. */
  readonly service: ServiceImpl<typeof Health>;
}

/**
 * Health for "" (the server) and each named service. All share one state:
 * the server is only useful when it can reach its database, whatever the
 * service.
 */
export function createHealth(serviceNames: string[]): HealthState {
  const known = new Set(["", ...serviceNames]);
  let started = false;
  let databaseReachable = true;
  let status = Status.NOT_SERVING;
  let closed = false;
  let wake: (() => void)[] = [];
  const notify = () => {
    const waiting = wake;
    wake = [];
    for (const w of waiting) w();
  };
  const changed = (signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        resolve();
      };
      wake.push(done);
      signal.addEventListener("abort", done, { once: true });
    });

  const update = () => {
    const next = started && databaseReachable ? Status.SERVING : Status.NOT_SERVING;
    if (next !== status) {
      status = next;
      notify();
    }
  };

  return {
    setServing(serving) {
      started = serving;
      update();
    },
    setDatabaseReachable(reachable) {
      databaseReachable = reachable;
      update();
    },
    close() {
      closed = true;
      notify();
    },
    service: {
      check(req) {
        if (!known.has(req.service)) {
          throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
        }
        return { status };
      },
      list() {
        return { statuses: Object.fromEntries([...known].map((name) => [name, { status }])) };
      },
      async *watch(req, ctx) {
        let sent: Status | undefined;
        for (;;) {
          const current = known.has(req.service) ? status : Status.SERVICE_UNKNOWN;
          if (current !== sent) {
            sent = current;
            yield { status: current };
          }
          // Checked after sending: a shutdown sets NOT_SERVING and closes at
          // once, and watchers must still hear NOT_SERVING before the end.
          if (closed || ctx.signal.aborted) break;
          await changed(ctx.signal);
        }
        // A deadline or cancel ends the stream with its status, not OK.
        if (!closed) ctx.signal.throwIfAborted();
      },
    },
  };
}
