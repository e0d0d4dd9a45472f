import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.ts";

/** A key-encryption key (KEK): wraps the data keys of credentials. */
export interface Kek {
  /** Its id, stored beside every data key it wraps. */
  id: string;
  /** 32 bytes of AES-256 key. */
  key: Buffer;
}

/**
 * The configured KEKs. The primary (the last one listed) wraps every new
 * data key; the others only unwrap what they wrapped before, until those rows
 * are re-wrapped and the old key is retired by removing it.
 */
export interface Keyring {
  /** The KEK new data keys are wrapped with. */
  readonly primary: Kek;
  /** Ids of every configured KEK, oldest first. */
  readonly ids: readonly string[];
  /** The KEK with this id, or undefined when it is not (or no longer) configured. */
  get(id: string): Kek | undefined;
}

const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const KEY_BYTES = 32;
const DEV_KEY_FILE = "credential-keys";

/**
 * Parses CREDENTIAL_KEYS: comma-separated `id:base64key` entries, each key
 * exactly 32 bytes, ids unique; the last entry is primary. Errors name the
 * entry by position, never echo key material.
 */
export function parseKeyring(text: string): Keyring {
  const entries = text
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0) throw new Error("CREDENTIAL_KEYS has no entries");
  const keys = entries.map((entry, i): Kek => {
    const colon = entry.indexOf(":");
    const id = colon < 0 ? "" : entry.slice(0, colon);
    if (!KEY_ID.test(id)) {
      throw new Error(`CREDENTIAL_KEYS entry ${i + 1}: expected id:base64key with an id of [A-Za-z0-9._-], at most 64`);
    }
    const key = Buffer.from(entry.slice(colon + 1), "base64");
    if (key.length !== KEY_BYTES) {
      throw new Error(`CREDENTIAL_KEYS entry ${i + 1} (${id}): the key must be ${KEY_BYTES} bytes of base64`);
    }
    return { id, key };
  });
  const byId = new Map(keys.map((k) => [k.id, k]));
  if (byId.size !== keys.length) throw new Error("CREDENTIAL_KEYS lists a key id twice");
  return { primary: keys.at(-1)!, ids: keys.map((k) => k.id), get: (id) => byId.get(id) };
}

/** A new `id:base64key` entry for CREDENTIAL_KEYS. */
export function newKeyEntry(id: string): string {
  return `${id}:${randomBytes(KEY_BYTES).toString("base64")}`;
}

/**
 * The keyring of a development server started without CREDENTIAL_KEYS: read
 * from DATA_DIR, or generated there on first start. Loud, because anyone who
 * can read that file beside the database can decrypt every credential.
 * Production refuses to start without CREDENTIAL_KEYS (config.ts).
 */
export function developmentKeyring(dataDir: string, logger: Logger): Keyring {
  if (dataDir.startsWith("memory://")) {
    // An in-memory database dies with the process; so may its key.
    logger.warn("CREDENTIAL_KEYS is not set: credentials are encrypted with a key that lives only as long as this process");
    return parseKeyring(newKeyEntry("ephemeral"));
  }
  const file = join(dataDir, DEV_KEY_FILE);
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(file, `${newKeyEntry(`dev-${Date.now()}`)}\n`, { mode: 0o600, flag: "wx" });
  }
  logger.warn(
    "CREDENTIAL_KEYS is not set: credentials are encrypted with a development key stored beside the data; " +
      "anyone who can read that file can decrypt them. Set CREDENTIAL_KEYS outside development.",
    { keyFile: file },
  );
  return parseKeyring(readFileSync(file, "utf8"));
}
