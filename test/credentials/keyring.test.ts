import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { developmentKeyring, newKeyEntry, parseKeyring } from "../../src/credentials/keyring.ts";
import { createLogger } from "../../src/log.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("CREDENTIAL_KEYS", () => {
  it("makes the last entry primary and keeps the others for decryption", () => {
    const keyring = parseKeyring(`${newKeyEntry("old")}, ${newKeyEntry("new")}`);
    expect(keyring.primary.id).toBe("new");
    expect(keyring.ids).toEqual(["old", "new"]);
    expect(keyring.get("old")?.key).toHaveLength(32);
    expect(keyring.get("gone")).toBeUndefined();
  });

  it("refuses malformed entries without echoing key material", () => {
    const short = `k:${Buffer.alloc(16, 1).toString("base64")}`;
    for (const bad of ["", "nokey", `:${Buffer.alloc(32).toString("base64")}`, short, `${newKeyEntry("a")},${newKeyEntry("a")}`, `bad id:${Buffer.alloc(32).toString("base64")}`]) {
      let message = "";
      try {
        parseKeyring(bad);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, bad).not.toBe("");
      expect(message).not.toContain(Buffer.alloc(16, 1).toString("base64"));
    }
  });

  it("is required in production", () => {
    const production = { NODE_ENV: "production", JWT_SECRET: "a-production-secret-0123456789abcdef" };
    expect(() => loadConfig(production)).toThrow(/CREDENTIAL_KEYS/);
    expect(loadConfig({ ...production, CREDENTIAL_KEYS: newKeyEntry("p1") }).credentialKeys?.primary.id).toBe("p1");
  });
});

describe("without CREDENTIAL_KEYS outside production", () => {
  it("generates a key under DATA_DIR once, readable only by the owner, with a loud warning", () => {
    const dir = mkdtempSync(join(tmpdir(), "agent-platform-keys-"));
    dirs.push(dir);
    const logs: string[] = [];
    const logger = createLogger("info", (line) => void logs.push(line));
    const first = developmentKeyring(dir, logger);
    const second = developmentKeyring(dir, logger);
    expect(second.primary.id).toBe(first.primary.id);
    expect(second.primary.key.equals(first.primary.key)).toBe(true);
    const file = join(dir, "credential-keys");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, "utf8")).toContain(first.primary.id);
    expect(logs).toHaveLength(2);
    expect(JSON.parse(logs[0]!)).toMatchObject({ level: "warn", keyFile: file });
    expect(logs.join("")).not.toContain(first.primary.key.toString("base64"));
  });
});
