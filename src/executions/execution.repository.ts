import { UniqueConstraintViolationException, type FilterQuery } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { NotFoundError } from "../common/errors.ts";
import { UNFINISHED } from "./codecs.ts";
import { ExecutionEvent } from "./execution-event.entity.ts";
import { Execution } from "./execution.entity.ts";

/** Filters and cursor of one ListExecutions page. */
export interface ExecutionPageQuery {
  limit: number;
  /** create_time (ISO) and id of the last execution served. */
  after?: [string, string];
  agentId: string;
  statuses: string[];
  sessionId: string;
  model: string;
  from?: Date;
  to?: Date;
}

// Deepest child level followed; a guard, not a product limit (a chain of
// runs this deep would be a runaway orchestration).
const MAX_TREE_DEPTH = 100;

/** Execution persistence through the request's tenant-scoped EntityManager. */
export class ExecutionRepository {
  readonly #em: EntityManager;

  constructor(em: EntityManager) {
    this.#em = em;
  }

  async get(id: string): Promise<Execution> {
    const execution = await this.#em.findOne(Execution, { id });
    if (!execution) throw new NotFoundError("execution", id);
    return execution;
  }

  /**
   * A fresh read, bypassing the identity map (the runner writes through its
   * own fork), within the call's transaction if there is one: it sees what
   * the call itself just changed.
   */
  async reload(id: string): Promise<Execution> {
    const execution = await this.#em.fork({ keepTransactionContext: true }).findOne(Execution, { id });
    if (!execution) throw new NotFoundError("execution", id);
    return execution;
  }

  async findByRequestId(requestId: string): Promise<Execution | null> {
    return this.#em.fork().findOne(Execution, { requestId });
  }

  /**
   * Stores a new execution. When another call with the same request_id won
   * the race, returns that one's execution instead (`created` false).
   */
  async insert(fields: Partial<Execution>): Promise<{ execution: Execution; created: boolean }> {
    const execution = this.#em.create(Execution, fields as Execution);
    try {
      await this.#em.flush();
      return { execution, created: true };
    } catch (err) {
      if (err instanceof UniqueConstraintViolationException && fields.requestId) {
        this.#em.clear();
        const winner = await this.findByRequestId(fields.requestId);
        if (winner) return { execution: winner, created: false };
      }
      throw err;
    }
  }

  async list(q: ExecutionPageQuery): Promise<Execution[]> {
    const and: FilterQuery<Execution>[] = [];
    if (q.agentId) and.push({ agentId: q.agentId });
    if (q.statuses.length > 0) and.push({ status: { $in: q.statuses } });
    if (q.sessionId) and.push({ sessionId: q.sessionId });
    if (q.model) and.push({ model: q.model });
    if (q.from) and.push({ createTime: { $gte: q.from } });
    if (q.to) and.push({ createTime: { $lt: q.to } });
    if (q.after) {
      const [time, id] = q.after;
      // The redundant `<=` bound lets PostgreSQL start the index scan at the
      // cursor instead of filtering every newer row: page 5000 costs what page 1 does.
      and.push({ createTime: { $lte: new Date(time) } });
      and.push({ $or: [{ createTime: { $lt: new Date(time) } }, { createTime: new Date(time), id: { $lt: id } }] });
    }
    return this.#em.find(Execution, { $and: and }, { orderBy: { createTime: "desc", id: "desc" }, limit: q.limit });
  }

  /** Descendants of `root`, level by level (one query per level). */
  async descendants(root: string): Promise<Execution[]> {
    const all: Execution[] = [];
    let level = [root];
    for (let depth = 0; depth < MAX_TREE_DEPTH && level.length > 0; depth++) {
      const children = await this.#em.find(Execution, { parentExecutionId: { $in: level } }, { orderBy: { createTime: "asc" } });
      all.push(...children);
      level = children.map((c) => c.id);
    }
    return all;
  }

  /** Marks an unfinished execution CANCELLED; false when it had already finished. */
  async cancel(id: string): Promise<boolean> {
    const now = new Date();
    const changed = await this.#em.nativeUpdate(
      Execution,
      { id, status: { $in: UNFINISHED } },
      { status: "CANCELLED", endTime: now, errorCode: "CANCELLED", errorMessage: "the execution was cancelled" },
    );
    return changed > 0;
  }

  /** Stored events after `afterSequence`, in order. */
  async eventsAfter(executionId: string, afterSequence: number): Promise<ExecutionEvent[]> {
    return this.#em.fork().find(
      ExecutionEvent,
      { executionId, sequence: { $gt: afterSequence } },
      { orderBy: { sequence: "asc" } },
    );
  }
}
