import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { EntityManager } from "@mikro-orm/postgresql";

/*
 * One database transaction per unary call. Without it every statement of a
 * call ran in a transaction of its own (BEGIN, set_config of the tenant, the
 * statement, COMMIT: see scopeToTenant), four round trips for one read. Here
 * the call's EntityManager begins one transaction before the handler runs
 * (READ ONLY for a method marked NO_SIDE_EFFECTS) and the tenant setting is
 * applied once, at its start, by the same session context as before, so the
 * ORM filter and row-level security hold exactly as they did. The handler's
 * own `em.transactional` blocks become savepoints inside it: a statement that
 * fails there (a unique violation answered ALREADY_EXISTS, a lost race that
 * is retried) rolls back to its savepoint and leaves the call's transaction
 * usable.
 */

/** How a call reaches the database. */
export type CallTransactionMode = "read-only" | "read-write" | "none";

/**
 * The transaction a call of `method` runs in. Streams hold none (they stay
 * open for as long as the client watches), nor do the unary methods named in
 * `ownTransactions`, whose work must commit before the call ends (ExecuteAgent
 * waits for a run that reads its execution row on another connection) or is
 * split into short transactions on purpose (batched purges).
 */
export function callTransactionMode(method: DescMethod, ownTransactions: ReadonlySet<string>): CallTransactionMode {
  if (method.methodKind !== "unary" || ownTransactions.has(`${method.parent.typeName}/${method.name}`)) return "none";
  return method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ? "read-only" : "read-write";
}

// Work to do once the call's transaction has committed, per call EntityManager.
const afterCommitHooks = new WeakMap<EntityManager, (() => void)[]>();

/**
 * Runs `hook` once what `em`'s call wrote is committed (and visible to other
 * connections and processes): at its commit, never after a rollback. Outside
 * a call transaction (streams), at once.
 */
export function afterCommit(em: EntityManager, hook: () => void): void {
  const hooks = afterCommitHooks.get(em);
  if (hooks) hooks.push(hook);
  else hook();
}

/**
 * Runs `work` in one transaction of `em`, the call's own EntityManager:
 * committed when `work` succeeds, rolled back when it throws or when
 * `signal` (the call's deadline or cancel) fired meanwhile, so an abandoned
 * call stores nothing and gives its connection back clean. A read-only
 * transaction is ended without a flush: a read never writes an entity, so
 * comparing every loaded entity with its snapshot would be work for nothing.
 */
export async function inCallTransaction<T>(
  em: EntityManager,
  mode: "read-only" | "read-write",
  signal: AbortSignal,
  work: () => Promise<T>,
): Promise<T> {
  const readOnly = mode === "read-only";
  await em.begin({ readOnly });
  const hooks: (() => void)[] = [];
  afterCommitHooks.set(em, hooks);
  let result: T;
  try {
    result = await work();
    signal.throwIfAborted();
    if (readOnly) {
      await em.getConnection("write").commit(em.getTransactionContext()!);
      em.resetTransactionContext();
    } else {
      await em.commit();
    }
  } catch (err) {
    afterCommitHooks.delete(em);
    // A failed rollback must not hide why the call failed (a dead
    // connection is given back by releasing-driver.ts either way).
    if (em.isInTransaction()) await em.rollback().catch(() => {});
    throw err;
  }
  afterCommitHooks.delete(em);
  for (const hook of hooks) hook();
  return result;
}
