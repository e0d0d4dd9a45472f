import type { Interceptor } from "@connectrpc/connect";
import type { MikroORM } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { entityManagerKey, principalKey, requestSignalKey } from "../../call-context.ts";
import { abortStrategyOf } from "../../db/orm.ts";
import { scopeToTenant } from "../../db/tenant.ts";

/**
 * Forks one EntityManager per authenticated request, scoped to the
 * principal's tenant (the filter's parameter, and the `app.tenant_id` setting
 * that row-level security reads in each of its transactions: see
 * scopeToTenant), with the request's deadline as its abort signal. Handlers
 * reach the database only through it.
 */
export function entityManagerInterceptor(orm: MikroORM): Interceptor {
  const abortStrategy = abortStrategyOf(orm);
  return (next) => async (req) => {
    const principal = req.contextValues.get(principalKey);
    if (principal) {
      const em = orm.em.fork({
        signal: req.contextValues.get(requestSignalKey) ?? req.signal,
        // A deadline cancels the query in PostgreSQL, not just the wait for it.
        inflightQueryAbortStrategy: abortStrategy,
      }) as EntityManager;
      scopeToTenant(em, principal.tenantId);
      req.contextValues.set(entityManagerKey, em);
    }
    return next(req);
  };
}
