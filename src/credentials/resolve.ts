import type { EntityManager } from "@mikro-orm/postgresql";
import { CredentialState, type CredentialSecret, type CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { FailedPreconditionError } from "../common/errors.ts";
import { credentialType } from "./codecs.ts";
import { stateOf } from "./credential-state.ts";
import { CredentialRepository } from "./credential.repository.ts";
import type { Keyring } from "./keyring.ts";
import { decodeSecret, secretViolations } from "./secret.ts";

/** A credential opened for one use by the platform. Never log, return or store it. */
export interface ResolvedCredential {
  /** Its id. */
  id: string;
  /** Its name, for messages. */
  name: string;
  /** Its type; `secret.value.case` always matches it. */
  type: CredentialType;
  /** The decrypted secret. */
  secret: CredentialSecret;
}

/**
 * Decrypts a credential of the EntityManager's tenant for one use (the
 * platform's, e.g. ExecutionService calling an agent; never an RPC) and
 * records the use in last_used_time. Another tenant's id is NOT_FOUND like a
 * missing one; EXPIRED and REVOKED credentials, a retired key and a
 * ciphertext that fails authentication are FAILED_PRECONDITION. The value is
 * returned, never logged.
 */
export async function resolveCredential(
  em: EntityManager,
  credentialId: string,
  keyring: Keyring,
): Promise<ResolvedCredential> {
  const repo = new CredentialRepository(em, keyring);
  const credential = await repo.getWithSecret(credentialId);
  const now = new Date();
  const state = stateOf(credential, now);
  if (state !== CredentialState.ACTIVE) {
    const name = state === CredentialState.REVOKED ? "REVOKED" : "EXPIRED";
    throw new FailedPreconditionError(`the credential is ${name.toLowerCase()} and cannot be used`, `CREDENTIAL_${name}`, [
      {
        type: `CREDENTIAL_${name}`,
        subject: `credentials/${credential.id}`,
        description: state === CredentialState.REVOKED ? "create a new credential" : "extend its expire_time with UpdateCredential",
      },
    ]);
  }
  const plaintext = repo.openSecret(credential);
  let secret: CredentialSecret;
  try {
    secret = decodeSecret(plaintext);
  } finally {
    plaintext.fill(0);
  }
  const type = credentialType.fromDb(credential.type);
  // The type column is not under the AAD; a payload of another kind means
  // the row was edited outside the service.
  if (secretViolations(type, secret, "secret").length > 0 || !secret.value.case) {
    throw new FailedPreconditionError("the credential's stored secret does not match its type", "CREDENTIAL_UNREADABLE", [
      { type: "CREDENTIAL_UNREADABLE", subject: `credentials/${credential.id}`, description: "rotate the credential to store a new secret" },
    ]);
  }
  await repo.markUsed(credential, now);
  return { id: credential.id, name: credential.name, type, secret };
}
