import pg from "pg";
import type { EntityManager } from "@mikro-orm/postgresql";
import type { Logger } from "../log.ts";
import type { ExecutionRunner } from "./runner.ts";

const CHANNEL = "agentplatform_execution_cancel";
// Pause before listening again after the connection dropped.
const RECONNECT_MS = 1000;

/** Tells whichever server instance runs an execution to stop it. */
export interface CancelBus {
  /** Stops the run here, and asks every other instance on the database to stop it too. */
  publish(em: EntityManager, executionId: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * PostgreSQL LISTEN/NOTIFY between the instances that share a database. The
 * payload is an execution id, which the receiver only uses to abort a run it
 * holds in memory; the database row was already marked CANCELLED by the
 * sender, inside its tenant. Embedded PGlite serves one process, so there the
 * bus is local only.
 */
export function createCancelBus(databaseUrl: string | undefined, runner: ExecutionRunner, logger: Logger): CancelBus {
  if (!databaseUrl) {
    return {
      publish: async (_em, id) => void runner.cancelLocal(id),
      close: async () => {},
    };
  }
  let closed = false;
  let client: pg.Client | undefined;
  // Listens on a connection of its own; when that connection drops (database
  // restart, pg_terminate_backend) it reconnects after a pause. Runs started
  // meanwhile are still stopped by their heartbeat.
  const connect = async (): Promise<void> => {
    if (closed) return;
    const next = new pg.Client({ connectionString: databaseUrl });
    next.on("notification", (msg) => {
      if (msg.channel === CHANNEL && msg.payload) runner.cancelLocal(msg.payload);
    });
    next.on("error", (error) => logger.warn("cancel listener connection failed", { error }));
    next.on("end", () => {
      if (!closed) setTimeout(() => void connect(), RECONNECT_MS).unref();
    });
    try {
      await next.connect();
      await next.query(`listen ${CHANNEL}`);
      client = next;
    } catch (error) {
      logger.warn("cancel listener could not connect; retrying", { error });
      await next.end().catch(() => {});
    }
  };
  const ready = connect();
  return {
    async publish(em, id) {
      if (runner.cancelLocal(id)) return;
      // In the call's transaction: PostgreSQL delivers the notification when
      // the cancel commits, and not at all if it rolls back.
      await em.getConnection().execute("select pg_notify(?, ?)", [CHANNEL, id], "all", em.getTransactionContext());
    },
    async close() {
      closed = true;
      await ready;
      await client?.end().catch(() => {});
    },
  };
}
