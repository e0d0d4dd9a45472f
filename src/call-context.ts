// What a call carries from the pipeline to its handler: typed context keys,
// set by the pipeline (src/pipeline/), and the accessors feature code reads
// them with. Feature code imports this module, never the pipeline.
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { EntityManager } from "@mikro-orm/postgresql";
import type { Principal } from "./auth/principal.ts";
import { UnauthenticatedError } from "./common/errors.ts";

/** The authenticated caller of the current request; set by admission. */
export const principalKey = createContextKey<Principal | undefined>(undefined, {
  description: "authenticated principal",
});

/** The signal that ends a request: client cancel, client deadline, or the default deadline. */
export const requestSignalKey = createContextKey<AbortSignal | undefined>(undefined, {
  description: "request signal with deadline",
});

/** The request's own EntityManager, scoped to the caller's tenant. */
export const entityManagerKey = createContextKey<EntityManager | undefined>(undefined, {
  description: "request-scoped EntityManager",
});

/** The caller of a handler; only reachable for methods that need a token. */
export function principalOf(ctx: HandlerContext): Principal {
  const principal = ctx.values.get(principalKey);
  if (!principal) {
    throw new UnauthenticatedError("no principal on this request");
  }
  return principal;
}

/** The handler's EntityManager; only authenticated methods have one. */
export function emOf(ctx: HandlerContext): EntityManager {
  const em = ctx.values.get(entityManagerKey);
  if (!em) {
    throw new Error("no EntityManager on this request: is the method public?");
  }
  return em;
}

/** The call's signal with its deadline (the default one for unary calls without a client deadline). */
export function signalOf(ctx: HandlerContext): AbortSignal {
  return ctx.values.get(requestSignalKey) ?? ctx.signal;
}
