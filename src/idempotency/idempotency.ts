import { createHash } from "node:crypto";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { UniqueConstraintViolationException } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { AlreadyExistsError } from "../common/errors.ts";
import { IdempotencyKey } from "./idempotency-key.entity.ts";

/** How long a request_id is remembered. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;

/** A Create* call that may carry a request_id. */
export interface IdempotentCreate<T, Desc extends DescMessage> {
  /** The client's request_id; empty means no idempotency. */
  requestId: string;
  /** The RPC, e.g. "CreateTool": a request_id is bound to one method. */
  method: string;
  /** The request, whose digest a retry must match. */
  schema: Desc;
  request: MessageShape<Desc>;
  /** Creates the resource inside the given transaction. */
  create(tx: EntityManager): Promise<{ id: string; result: T }>;
  /** Reads the resource created by the first call. */
  replay(em: EntityManager, id: string): Promise<T>;
}

/**
 * Runs a create at most once per request_id (AIP-155). The key row is written
 * before the resource, in the same transaction, so a concurrent retry waits
 * on the key and then replays the first call's result instead of racing it
 * (and failing on, say, the unique name the first call just took). The same
 * request_id with another request is ALREADY_EXISTS.
 */
export async function idempotentCreate<T, Desc extends DescMessage>(
  em: EntityManager,
  call: IdempotentCreate<T, Desc>,
): Promise<T> {
  if (!call.requestId) {
    return (await em.transactional((tx) => call.create(tx))).result;
  }
  const hash = createHash("sha256").update(call.method).update(toBinary(call.schema, call.request)).digest("hex");
  const earlier = await replayIfSeen(em, call, hash);
  if (earlier.seen) return earlier.result;
  try {
    return await em.transactional(async (tx) => {
      // A key past the window is forgotten, and its request_id reusable; a
      // live one stays (a concurrent first call may just have committed it).
      await tx.nativeDelete(IdempotencyKey, {
        requestId: call.requestId,
        createTime: { $lt: new Date(Date.now() - IDEMPOTENCY_WINDOW_MS) },
      });
      const key = tx.create(IdempotencyKey, {
        requestId: call.requestId,
        method: call.method,
        requestHash: hash,
        resourceId: null,
      } as IdempotencyKey);
      await tx.flush();
      const { id, result } = await call.create(tx);
      key.resourceId = id;
      await tx.flush();
      return result;
    });
  } catch (err) {
    if (!(err instanceof UniqueConstraintViolationException)) throw err;
    // Another call with this request_id committed first: answer as it did.
    const winner = await replayIfSeen(em, call, hash);
    if (winner.seen) return winner.result;
    throw err;
  }
}

async function replayIfSeen<T, Desc extends DescMessage>(
  em: EntityManager,
  call: IdempotentCreate<T, Desc>,
  hash: string,
): Promise<{ seen: true; result: T } | { seen: false }> {
  // A fresh read (not the identity map), in the call's transaction: a fork
  // without it would take a second connection, which PGlite does not have.
  const key = await em.fork({ keepTransactionContext: true }).findOne(IdempotencyKey, { requestId: call.requestId });
  if (!key || !key.resourceId || key.createTime.getTime() < Date.now() - IDEMPOTENCY_WINDOW_MS) {
    return { seen: false };
  }
  if (key.method !== call.method || key.requestHash !== hash) {
    throw new AlreadyExistsError("this request_id was used for a different request", "REQUEST_ID_REUSED", {
      request_id: call.requestId,
    });
  }
  return { seen: true, result: await call.replay(em, key.resourceId) };
}
