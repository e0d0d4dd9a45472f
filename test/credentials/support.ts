import type { EntityManager } from "@mikro-orm/postgresql";
import type { MikroORM } from "@mikro-orm/core";
import { parseKeyring, type Keyring } from "../../src/credentials/keyring.ts";
import { resolveCredential, type ResolvedCredential } from "../../src/credentials/resolve.ts";
import { scopeToTenant } from "../../src/db/tenant.ts";
import { ownerSql } from "../support/db.ts";
import { TEST_CREDENTIAL_KEYS } from "../support/server.ts";

/** The keyring test servers run with. */
export const testKeyring: Keyring = parseKeyring(TEST_CREDENTIAL_KEYS);

/** A fresh EntityManager scoped to `tenant`, as a request of that tenant would get. */
export function emFor(orm: MikroORM, tenant: string): EntityManager {
  const em = orm.em.fork() as EntityManager;
  scopeToTenant(em, tenant);
  return em;
}

/** What the platform would get when it uses the credential on behalf of `tenant`. */
export function resolveAs(orm: MikroORM, tenant: string, credentialId: string, keyring = testKeyring): Promise<ResolvedCredential> {
  return resolveCredential(emFor(orm, tenant), credentialId, keyring);
}

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection, but the promise resolved");
}

/** Runs SQL on the test database as its owner, past row-level security (tests only: arranging tampering). */
export async function sql<T = Record<string, unknown>>(orm: MikroORM, query: string, params: unknown[] = []): Promise<T[]> {
  return ownerSql<T>(orm, query, params);
}
