import { CredentialState } from "../../gen/agentplatform/v1/credential_pb.js";
import type { Credential } from "./credential.entity.ts";

/** Stored states; EXPIRED is never stored, it follows from expire_time. */
export const STORED_ACTIVE = "ACTIVE";
export const STORED_REVOKED = "REVOKED";

/** The state a credential is in at `now`. Revoked wins over expired. */
export function stateOf(credential: Credential, now = new Date()): CredentialState {
  if (credential.state === STORED_REVOKED) return CredentialState.REVOKED;
  if (credential.expireTime && credential.expireTime.getTime() <= now.getTime()) return CredentialState.EXPIRED;
  return CredentialState.ACTIVE;
}
