import { ForeignKeyConstraintViolationException, raw, UniqueConstraintViolationException, type FilterQuery } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { CredentialState, type CredentialSecret } from "../../gen/agentplatform/v1/credential_pb.js";
import { agentsBoundTo, unbindEverywhere } from "../bindings/credential-links.ts";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from "../common/errors.ts";
import { newId } from "../common/ids.ts";
import { tenantOf } from "../db/tenant.ts";
import { STORED_ACTIVE, STORED_REVOKED } from "./credential-state.ts";
import { Credential, SECRET_COLUMNS } from "./credential.entity.ts";
import { open, rewrap, seal, type Sealed } from "./envelope.ts";
import type { Keyring } from "./keyring.ts";
import { openError } from "./open-errors.ts";
import { encodeSecret, hintOf } from "./secret.ts";

/** The metadata a client sets on create. */
export interface CredentialFields {
  name: string;
  description: string;
  /** Stored type name, e.g. "API_KEY". */
  type: string;
  expireTime: Date | null;
  creator: string;
}

/** One ListCredentials page in name order. */
export interface CredentialPageQuery {
  limit: number;
  /** Name of the last credential of the previous page. */
  afterName?: string;
  /** Stored type name, or "" for any. */
  type: string;
  /** State, or UNSPECIFIED for any. */
  state: CredentialState;
  /** The instant EXPIRED is judged at. */
  now: Date;
}

/** Progress of one RewrapCredentials call. */
export interface RewrapProgress {
  rewrapped: number;
  remaining: number;
  underRetiredKeys: number;
}

// How many agents a FAILED_PRECONDITION lists at most.
const MAX_LISTED_AGENTS = 20;

/**
 * Credential persistence through the request's tenant-scoped EntityManager.
 * Secrets enter only to be sealed and leave only opened by resolve.ts; every
 * ciphertext is bound to the EntityManager's tenant and the row's id.
 */
export class CredentialRepository {
  readonly #em: EntityManager;
  readonly #keyring: Keyring;

  constructor(em: EntityManager, keyring: Keyring) {
    this.#em = em;
    this.#keyring = keyring;
  }

  async create(fields: CredentialFields, secret: CredentialSecret): Promise<Credential> {
    // The id is chosen here, not on insert: the ciphertext is bound to it.
    const id = newId();
    const credential = this.#em.create(Credential, {
      ...fields,
      id,
      state: STORED_ACTIVE,
      secretVersion: 1,
      secretHint: hintOf(secret),
      ...this.#seal(id, secret),
    } as Credential);
    await this.#flushUnique(fields.name);
    return credential;
  }

  /** A credential's metadata; the ciphertext is not loaded. */
  async get(id: string): Promise<Credential> {
    const credential = await this.#em.findOne(Credential, { id });
    if (!credential) throw new NotFoundError("credential", id);
    return credential;
  }

  /** A credential with its ciphertext loaded. */
  async getWithSecret(id: string): Promise<Credential> {
    const credential = await this.#em.findOne(Credential, { id }, { populate: [...SECRET_COLUMNS] });
    if (!credential) throw new NotFoundError("credential", id);
    return credential;
  }

  async list(q: CredentialPageQuery): Promise<Credential[]> {
    const and: FilterQuery<Credential>[] = [];
    if (q.afterName !== undefined) and.push({ name: { $gt: q.afterName } });
    if (q.type !== "") and.push({ type: q.type });
    if (q.state === CredentialState.REVOKED) and.push({ state: STORED_REVOKED });
    if (q.state === CredentialState.EXPIRED) and.push({ state: STORED_ACTIVE, expireTime: { $lte: q.now } });
    if (q.state === CredentialState.ACTIVE) {
      and.push({ state: STORED_ACTIVE, $or: [{ expireTime: null }, { expireTime: { $gt: q.now } }] });
    }
    return this.#em.find(Credential, { $and: and }, { orderBy: { name: "asc" }, limit: q.limit });
  }

  /** Saves metadata changes to a loaded credential. */
  async save(credential: Credential): Promise<void> {
    await this.#flushUnique(credential.name);
  }

  /** Replaces the secret of a loaded credential under a fresh data key and the primary KEK. */
  async rotate(credential: Credential, secret: CredentialSecret): Promise<void> {
    this.#refuseRevoked(credential);
    Object.assign(credential, this.#seal(credential.id, secret), {
      secretHint: hintOf(secret),
      secretVersion: credential.secretVersion + 1,
    });
    await this.#em.flush();
  }

  /** Revokes a loaded credential for good and erases its ciphertext. Revoking twice changes nothing. */
  async revoke(credential: Credential): Promise<void> {
    if (credential.state === STORED_REVOKED) return;
    Object.assign(credential, {
      state: STORED_REVOKED,
      revokeTime: new Date(),
      keyId: null,
      wrappedKey: null,
      payload: null,
    });
    await this.#em.flush();
  }

  /** Deletes a loaded credential; while agents use it only with `force`, which unbinds it first. */
  async delete(credential: Credential, force: boolean): Promise<void> {
    if (force) await unbindEverywhere(this.#em, credential.id);
    else await this.#refuseWhileBound(credential.id);
    this.#em.remove(credential);
    try {
      await this.#em.flush();
    } catch (err) {
      // An agent bound it between the check and the delete: the foreign key
      // (ON DELETE RESTRICT) has the last word.
      if (err instanceof ForeignKeyConstraintViolationException) {
        await this.#refuseWhileBound(credential.id, this.#em.fork());
      }
      throw err;
    }
  }

  /**
   * Re-wraps up to `limit` credentials that are under an older configured KEK.
   * Each row is swapped on its own, conditioned on still holding the key and
   * version it was read with, so a crash leaves every row either old or new
   * (both decrypt), a concurrent rotation wins, and a rerun just continues.
   */
  async rewrapBatch(limit: number): Promise<RewrapProgress> {
    const primary = this.#keyring.primary.id;
    const older = this.#keyring.ids.filter((id) => id !== primary);
    const batch =
      older.length === 0
        ? []
        : await this.#em.find(
            Credential,
            { keyId: { $in: older } },
            { populate: [...SECRET_COLUMNS], orderBy: { id: "asc" }, limit },
          );
    let rewrapped = 0;
    for (const credential of batch) {
      const next = this.#rewrapped(credential);
      const swapped = await this.#em.nativeUpdate(
        Credential,
        { id: credential.id, keyId: credential.keyId, version: credential.version },
        { ...next, version: credential.version + 1, updateTime: new Date() },
      );
      rewrapped += swapped;
    }
    const remaining = older.length === 0 ? 0 : await this.#em.count(Credential, { keyId: { $in: older } });
    const underRetiredKeys = await this.#em.count(Credential, { keyId: { $ne: null, $nin: [...this.#keyring.ids] } });
    return { rewrapped, remaining, underRetiredKeys };
  }

  #rewrapped(credential: Credential): Sealed {
    try {
      return rewrap(this.#keyring, this.#context(credential.id), sealedOf(credential));
    } catch (err) {
      throw openError(err, credential.id, credential.keyId);
    }
  }

  /** Opens a credential loaded with getWithSecret; throws FAILED_PRECONDITION when it cannot. */
  openSecret(credential: Credential): Uint8Array {
    try {
      return open(this.#keyring, this.#context(credential.id), sealedOf(credential));
    } catch (err) {
      throw openError(err, credential.id, credential.keyId);
    }
  }

  /** Records a use without touching the etag: a use is not an edit. */
  async markUsed(credential: Credential, when = new Date()): Promise<void> {
    // Naming the version column in the data stops the ORM's automatic bump.
    await this.#em.nativeUpdate(Credential, { id: credential.id }, { lastUsedTime: when, version: raw("version") });
    credential.lastUsedTime = when;
  }

  #seal(credentialId: string, secret: CredentialSecret): Sealed {
    const plaintext = encodeSecret(secret);
    try {
      return seal(this.#keyring, this.#context(credentialId), plaintext);
    } finally {
      plaintext.fill(0);
    }
  }

  #context(credentialId: string) {
    return { tenantId: tenantOf(this.#em), credentialId };
  }

  #refuseRevoked(credential: Credential): void {
    if (credential.state !== STORED_REVOKED) return;
    throw new FailedPreconditionError("the credential is revoked", "CREDENTIAL_REVOKED", [
      { type: "CREDENTIAL_REVOKED", subject: `credentials/${credential.id}`, description: "a revoked credential stays revoked; create a new one" },
    ]);
  }

  async #refuseWhileBound(credentialId: string, em: EntityManager = this.#em): Promise<void> {
    const agentIds = await agentsBoundTo(em, credentialId, MAX_LISTED_AGENTS);
    if (agentIds.length === 0) return;
    throw new FailedPreconditionError(
      "the credential is bound to agents; unbind it from them first, or delete with force",
      "CREDENTIAL_IN_USE",
      agentIds.map((id) => ({
        type: "CREDENTIAL_IN_USE",
        subject: `agents/${id}`,
        description: "this agent uses the credential; unbind it with AgentService.UnbindCredentials",
      })),
    );
  }

  async #flushUnique(name: string): Promise<void> {
    try {
      await this.#em.flush();
    } catch (err) {
      if (err instanceof UniqueConstraintViolationException) {
        throw new AlreadyExistsError(`a credential named ${JSON.stringify(name)} already exists`, "CREDENTIAL_NAME_TAKEN", { name });
      }
      throw err;
    }
  }
}

/** The stored boxes of a credential loaded with its ciphertext. */
function sealedOf(credential: Credential): Sealed {
  if (!credential.keyId || !credential.wrappedKey || !credential.payload) {
    throw new FailedPreconditionError("the credential holds no secret", "CREDENTIAL_REVOKED", [
      { type: "CREDENTIAL_REVOKED", subject: `credentials/${credential.id}`, description: "a revoked credential's secret is erased" },
    ]);
  }
  // BlobType hydrates bytea as a Buffer.
  return { keyId: credential.keyId, wrappedKey: credential.wrappedKey as Buffer, payload: credential.payload as Buffer };
}
