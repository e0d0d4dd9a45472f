import { FailedPreconditionError } from "../common/errors.ts";
import { OpenFailure } from "./envelope.ts";

/**
 * The domain error for a stored secret that cannot be opened: a clean
 * FAILED_PRECONDITION naming the credential and, for a retired key, the key
 * id (an id is not key material). Anything else is rethrown as is.
 */
export function openError(err: unknown, credentialId: string, keyId: string | null | undefined): unknown {
  if (!(err instanceof OpenFailure)) return err;
  const subject = `credentials/${credentialId}`;
  if (err.kind === "KEY_UNAVAILABLE") {
    return new FailedPreconditionError(
      "the credential's key-encryption key is no longer configured",
      "CREDENTIAL_KEY_UNAVAILABLE",
      [{ type: "CREDENTIAL_KEY_UNAVAILABLE", subject, description: `configure key ${JSON.stringify(keyId)} in CREDENTIAL_KEYS again, or rotate the credential` }],
    );
  }
  return new FailedPreconditionError(
    "the credential's stored secret failed authentication and cannot be used",
    "CREDENTIAL_UNREADABLE",
    [{ type: "CREDENTIAL_UNREADABLE", subject, description: "the stored ciphertext was altered or moved; rotate the credential to store a new secret" }],
  );
}
