import type { MikroORM } from "@mikro-orm/core";
import type { Role } from "../../src/auth/principal.ts";
import { mintToken } from "../../src/auth/tokens.ts";
import { loadConfig, type Config } from "../../src/config.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { createAppServer, type AppServer } from "../../src/server.ts";
import { createTestDatabase, type TestDatabase, type TestDatabaseOptions } from "./db.ts";

/** The secret test servers verify tokens with. */
export const TEST_SECRET = "test-secret-0123456789abcdef0123456789abcdef";

/** The credential keyring of test servers, so no test writes a development key under ./data. */
export const TEST_CREDENTIAL_KEYS = "test-1:q0wcWWX7+tQ7kQnTXNkOigZ0O2T6WZYh8qXFMdsC8xI=";

/**
 * What every test server and process runs with unless a test says otherwise:
 * the upstream fakes (test/support/upstream.ts) listen on 127.0.0.1, which
 * the outbound address rule refuses by default.
 */
export const TEST_ENV: Record<string, string> = { OUTBOUND_ALLOW_PRIVATE: "true" };

/** A real server on a real port over the test file's own database. */
export interface TestServer {
  /** Base URL, e.g. http://127.0.0.1:41234. */
  url: string;
  /** The bound port. */
  port: number;
  /** The server's ORM (tests use forks of it to arrange data). */
  orm: MikroORM;
  /** The database. */
  db: TestDatabase;
  /** The server, for shutdown tests. */
  server: AppServer;
  /** Everything the server logged. */
  logs: string[];
  /** A token for a tenant, editor by default. */
  token(tenant: string | string[], roles?: Role[], subject?: string): Promise<string>;
  /** Stops the server and drops the database. */
  close(): Promise<void>;
}

/** Starts a server; `env` overrides configuration variables, `database` how its database is made. */
export async function startTestServer(env: Record<string, string> = {}, database: TestDatabaseOptions = {}): Promise<TestServer> {
  const db = await createTestDatabase(database);
  const logs: string[] = [];
  const config: Config = loadConfig({
    JWT_SECRET: TEST_SECRET,
    HOST: "127.0.0.1",
    PORT: "0",
    CREDENTIAL_KEYS: TEST_CREDENTIAL_KEYS,
    ...TEST_ENV,
    // The vitest project's gRPC path (vitest.config.ts).
    GRPC_PATH: process.env.GRPC_PATH ?? "grpc-js",
    ...env,
  });
  const logger: Logger = createLogger("debug", (line) => void logs.push(line));
  const server = createAppServer({ config, orm: db.orm, logger });
  const port = await server.listen(0, "127.0.0.1");
  server.health.setServing(true);
  const secret = new TextEncoder().encode(TEST_SECRET);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    orm: db.orm,
    db,
    server,
    logs,
    token: (tenant, roles = ["editor"], subject = "test-user") =>
      mintToken(secret, { tenants: Array.isArray(tenant) ? tenant : [tenant], roles, subject, ttl: "10m" }),
    async close() {
      await server.shutdown();
      await db.close();
    },
  };
}
