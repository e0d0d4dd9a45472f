import { defineEntity, p } from "@mikro-orm/core";
import { tenantIdProperty } from "../db/tenant.ts";

/**
 * A credential: metadata in plain columns, the secret only as ciphertext
 * (see envelope.ts). The ciphertext columns are lazy, so metadata reads never
 * even fetch them, and hidden, so no serialisation of the entity carries
 * them. A revoked credential has its ciphertext erased: "revoked" cannot be
 * undone by any bug, because nothing is left to decrypt.
 */
export const CredentialSchema = defineEntity({
  name: "Credential",
  tableName: "credentials",
  properties: {
    // Set by the repository before insert: the ciphertext is bound to it.
    id: p.uuid().primary(),
    tenantId: tenantIdProperty(),
    name: p.string().length(100),
    description: p.text(),
    type: p.string().length(32),
    /** ACTIVE or REVOKED; EXPIRED is derived from expireTime when read. */
    state: p.string().length(16),
    secretHint: p.string().length(32),
    secretVersion: p.integer(),
    keyId: p.string().length(64).nullable(),
    wrappedKey: p.blob().nullable().lazy().hidden(),
    payload: p.blob().nullable().lazy().hidden(),
    expireTime: p.datetime().nullable(),
    lastUsedTime: p.datetime().nullable(),
    revokeTime: p.datetime().nullable(),
    creator: p.string().length(256),
    createTime: p.datetime().onCreate(() => new Date()),
    updateTime: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
    version: p.integer().version(),
  },
});

export class Credential extends CredentialSchema.class {}
CredentialSchema.setClass(Credential);

/** The columns that hold ciphertext, for loads that need them. */
export const SECRET_COLUMNS = ["wrappedKey", "payload"] as const;
