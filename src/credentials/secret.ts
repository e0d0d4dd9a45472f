import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  CredentialSecretSchema,
  CredentialType,
  type CredentialSecret,
} from "../../gen/agentplatform/v1/credential_pb.js";
import type { FieldViolation } from "../common/errors.ts";

/** The secret payload case each credential type takes. */
export type SecretCase = NonNullable<CredentialSecret["value"]["case"]>;

const CASE_OF_TYPE: Record<Exclude<CredentialType, CredentialType.UNSPECIFIED>, SecretCase> = {
  [CredentialType.API_KEY]: "apiKey",
  [CredentialType.OAUTH2]: "oauth2",
  [CredentialType.WEBHOOK_SECRET]: "webhookSecret",
  [CredentialType.BASIC_AUTH]: "basicAuth",
  [CredentialType.BEARER_TOKEN]: "bearerToken",
  [CredentialType.CUSTOM]: "custom",
};

const FIELD_OF_CASE: Record<SecretCase, string> = {
  apiKey: "api_key",
  oauth2: "oauth2",
  webhookSecret: "webhook_secret",
  basicAuth: "basic_auth",
  bearerToken: "bearer_token",
  custom: "custom",
};

/**
 * Whether `secret` is the payload `type` takes. The violation names the
 * expected field only: it never echoes any part of the secret.
 */
export function secretViolations(type: CredentialType, secret: CredentialSecret, field: string): FieldViolation[] {
  const expected = CASE_OF_TYPE[type as keyof typeof CASE_OF_TYPE];
  if (!expected || secret.value.case === expected) return [];
  return [{ field, description: `a credential of this type takes the ${FIELD_OF_CASE[expected]} payload` }];
}

// Below this length a hint would give away too much of the value.
const MIN_HINTED_LENGTH = 16;
const MASK = "••••";

/**
 * The masked hint of a secret: its most secret value's last four characters
 * when that value is long enough for them to reveal little, else the mask
 * alone. CUSTOM maps have no single value to hint at.
 */
export function hintOf(secret: CredentialSecret): string {
  const v = secret.value;
  const value =
    v.case === "apiKey" ? v.value.apiKey
    : v.case === "oauth2" ? v.value.clientSecret
    : v.case === "webhookSecret" ? v.value.secret
    : v.case === "basicAuth" ? v.value.password
    : v.case === "bearerToken" ? v.value.token
    : "";
  const chars = [...value];
  return chars.length >= MIN_HINTED_LENGTH ? MASK + chars.slice(-4).join("") : MASK;
}

/** The bytes that get encrypted. */
export function encodeSecret(secret: CredentialSecret): Uint8Array {
  return toBinary(CredentialSecretSchema, secret);
}

/** The secret of decrypted bytes. */
export function decodeSecret(bytes: Uint8Array): CredentialSecret {
  return fromBinary(CredentialSecretSchema, bytes);
}
