import type { Interceptor } from "@connectrpc/connect";
import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { entityManagerKey, principalKey, requestSignalKey } from "../../call-context.ts";
import { callTransactionMode, inCallTransaction } from "../../db/call-transaction.ts";
import { abortStrategyOf } from "../../db/orm.ts";
import { scopeToTenant } from "../../db/tenant.ts";

/**
 * Unary methods that run without a call transaction. ExecuteAgent waits for
 * its run, which starts on another connection and must see the execution row
 * committed (on PGlite, with its one connection, it could not even start), and
 * a run may last minutes: a transaction, the quota row lock and a connection
 * held that long would stall the tenant's other calls. PurgeExecutions deletes
 * in batches that commit one by one, to hold no long locks; RewrapCredentials
 * swaps row by row, so a damaged row stops it with the rows before it kept.
 */
const OWN_TRANSACTIONS: ReadonlySet<string> = new Set([
  "agentplatform.v1.ExecutionService/ExecuteAgent",
  "agentplatform.v1.ExecutionService/PurgeExecutions",
  "agentplatform.v1.CredentialService/RewrapCredentials",
]);

/**
 * Forks one EntityManager per authenticated request, scoped to the
 * principal's tenant (the filter's parameter, and the `app.tenant_id` setting
 * that row-level security reads in each of its transactions: see
 * scopeToTenant), with the request's deadline as its abort signal. Handlers
 * reach the database only through it; a unary call's work runs in one
 * transaction of it (call-transaction.ts), except in the methods named in
 * `ownTransactions` ("agentplatform.v1.Service/Method").
 */
export function entityManagerInterceptor(orm: MikroORM, ownTransactions = OWN_TRANSACTIONS): Interceptor {
  const abortStrategy = abortStrategyOf(orm);
  return (next) => async (req) => {
    const principal = req.contextValues.get(principalKey);
    if (!principal) return next(req);
    const signal = req.contextValues.get(requestSignalKey) ?? req.signal;
    const em = orm.em.fork({
      signal,
      // A deadline cancels the query in PostgreSQL, not just the wait for it.
      inflightQueryAbortStrategy: abortStrategy,
    }) as EntityManager;
    scopeToTenant(em, principal.tenantId);
    req.contextValues.set(entityManagerKey, em);
    const mode = callTransactionMode(req.method, ownTransactions);
    return mode === "none" ? next(req) : inCallTransaction(em, mode, signal, () => next(req));
  };
}
