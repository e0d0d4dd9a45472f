import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type { Kek, Keyring } from "./keyring.ts";

/**
 * Envelope encryption of one credential's secret. A fresh 256-bit data key
 * (DEK) encrypts the payload with AES-256-GCM; the DEK itself is encrypted
 * ("wrapped") with AES-256-GCM under a key-encryption key from the keyring.
 * Both boxes carry additional authenticated data naming the tenant, the
 * credential and the KEK, so a box copied into another row, another tenant,
 * or relabelled with another key id fails to open instead of yielding a
 * secret. Boxes are `iv (12) ‖ ciphertext ‖ tag (16)`.
 */

/** What a credential's ciphertext is bound to. */
export interface SealContext {
  tenantId: string;
  credentialId: string;
}

/** What is stored for a secret. */
export interface Sealed {
  /** Id of the KEK that wrapped the data key. */
  keyId: string;
  /** The data key, wrapped by the KEK. */
  wrappedKey: Buffer;
  /** The payload, encrypted with the data key. */
  payload: Buffer;
}

/** Why a stored secret could not be opened; never carries key or secret material. */
export class OpenFailure extends Error {
  /** "KEY_UNAVAILABLE": its KEK is not configured; "TAMPERED": authentication failed. */
  readonly kind: "KEY_UNAVAILABLE" | "TAMPERED";

  constructor(kind: "KEY_UNAVAILABLE" | "TAMPERED") {
    super(kind === "KEY_UNAVAILABLE" ? "the key-encryption key is not configured" : "the ciphertext failed authentication");
    this.name = "OpenFailure";
    this.kind = kind;
  }
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
const DEK_BYTES = 32;

/** Encrypts `plaintext` under a fresh data key wrapped by the primary KEK. */
export function seal(keyring: Keyring, ctx: SealContext, plaintext: Uint8Array): Sealed {
  const dek = randomBytes(DEK_BYTES);
  try {
    return sealWith(keyring.primary, dek, ctx, plaintext);
  } finally {
    dek.fill(0);
  }
}

/** Decrypts a stored secret; throws OpenFailure, never returns partial data. */
export function open(keyring: Keyring, ctx: SealContext, sealed: Sealed): Buffer {
  const dek = unwrap(keyring, ctx, sealed);
  try {
    return gcmOpen(dek, sealed.payload, aad("payload", ctx, sealed.keyId));
  } finally {
    dek.fill(0);
  }
}

/**
 * Re-wraps under the primary KEK: the data key is kept, and the payload is
 * re-encrypted with a new IV because its AAD names the KEK too. The old
 * boxes are fully authenticated first, so damage is never carried over.
 */
export function rewrap(keyring: Keyring, ctx: SealContext, sealed: Sealed): Sealed {
  const dek = unwrap(keyring, ctx, sealed);
  let plaintext: Buffer | undefined;
  try {
    plaintext = gcmOpen(dek, sealed.payload, aad("payload", ctx, sealed.keyId));
    return sealWith(keyring.primary, dek, ctx, plaintext);
  } finally {
    dek.fill(0);
    plaintext?.fill(0);
  }
}

function sealWith(kek: Kek, dek: Buffer, ctx: SealContext, plaintext: Uint8Array): Sealed {
  return {
    keyId: kek.id,
    wrappedKey: gcmSeal(kek.key, dek, aad("data-key", ctx, kek.id)),
    payload: gcmSeal(dek, plaintext, aad("payload", ctx, kek.id)),
  };
}

function unwrap(keyring: Keyring, ctx: SealContext, sealed: Sealed): Buffer {
  const kek = keyring.get(sealed.keyId);
  if (!kek) throw new OpenFailure("KEY_UNAVAILABLE");
  const dek = gcmOpen(kek.key, sealed.wrappedKey, aad("data-key", ctx, kek.id));
  if (dek.length !== DEK_BYTES) throw new OpenFailure("TAMPERED");
  return dek;
}

// Length-prefixed fields, so no choice of ids can make two contexts equal.
function aad(purpose: "data-key" | "payload", ctx: SealContext, keyId: string): Buffer {
  const parts = ["agent-platform/credential/v1", purpose, ctx.tenantId, ctx.credentialId, keyId].map((s) => Buffer.from(s));
  return Buffer.concat(parts.flatMap((p) => [u32(p.length), p]));
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function gcmSeal(key: Buffer, plaintext: Uint8Array, additional: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(additional);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

function gcmOpen(key: Buffer, box: Buffer, additional: Buffer): Buffer {
  if (box.length < IV_BYTES + TAG_BYTES) throw new OpenFailure("TAMPERED");
  const iv = box.subarray(0, IV_BYTES);
  const tag = box.subarray(box.length - TAG_BYTES);
  const body = box.subarray(IV_BYTES, box.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(additional);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    throw new OpenFailure("TAMPERED");
  }
}
