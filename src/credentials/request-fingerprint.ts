import { createHmac } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { CredentialSecretSchema } from "../../gen/agentplatform/v1/credential_pb.js";
import {
  CreateCredentialRequestSchema,
  type CreateCredentialRequest,
} from "../../gen/agentplatform/v1/credential_service_pb.js";
import type { Keyring } from "./keyring.ts";
import { encodeSecret } from "./secret.ts";

/**
 * The CreateCredential request as the request_id store (idempotency.ts)
 * digests it. That store keeps a plain SHA-256 of the request, and a plain
 * hash of a weak password can be brute-forced from a database dump; so the
 * secret is replaced by an HMAC under a key derived from the primary KEK,
 * which the database never holds. A retry with another secret still differs.
 */
export function fingerprintRequest(req: CreateCredentialRequest, keyring: Keyring): CreateCredentialRequest {
  const key = createHmac("sha256", keyring.primary.key).update("agent-platform/credential/request-fingerprint/v1").digest();
  const digest = req.secret ? createHmac("sha256", key).update(encodeSecret(req.secret)).digest("hex") : "";
  return create(CreateCredentialRequestSchema, {
    ...req,
    secret: create(CredentialSecretSchema, { value: { case: "custom", value: { values: { "hmac-sha256": digest } } } }),
  });
}
