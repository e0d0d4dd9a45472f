import type { MikroORM } from "@mikro-orm/core";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createAuthenticator } from "./auth/tokens.ts";
import { createPageTokens } from "./common/page-token.ts";
import type { Config } from "./config.ts";
import { developmentKeyring } from "./credentials/keyring.ts";
import { createCors } from "./http/cors.ts";
import { createListener } from "./http/listener.ts";
import { createCancelBus } from "./executions/cancel-bus.ts";
import { credentialLookup } from "./executions/credential-lookup.ts";
import { ExecutionRunner } from "./executions/runner.ts";
import { authInterceptor } from "./interceptors/auth.ts";
import { deadlineInterceptor } from "./interceptors/deadline.ts";
import { drainInterceptor } from "./interceptors/drain.ts";
import { entityManagerInterceptor } from "./interceptors/entity-manager.ts";
import { errorInterceptor } from "./interceptors/errors.ts";
import { validationInterceptor } from "./interceptors/validation.ts";
import type { Logger } from "./log.ts";
import { createHealth, type HealthState } from "./platform/health.ts";
import { allServices, routes } from "./routes.ts";

/** A server built but not yet listening; main.ts and the tests share it. */
export interface AppServer {
  /** Starts listening; resolves with the bound port. */
  listen(port: number, host: string): Promise<number>;
  /**
   * Graceful stop: health turns NOT_SERVING, new calls are refused, watch
   * streams end, in-flight calls get the grace period, then the rest are
   * aborted. Does not close the database.
   */
  shutdown(): Promise<void>;
  /** Health state, SERVING once the caller says so. */
  readonly health: HealthState;
}

/** What a server is built from. */
export interface ServerDeps {
  config: Config;
  orm: MikroORM;
  logger: Logger;
}

/** Builds the server: interceptors, routes, CORS and the one-port listener. */
export function createAppServer({ config, orm, logger }: ServerDeps): AppServer {
  const health = createHealth(allServices.map((s) => s.typeName));
  const abortInFlight = new AbortController();
  let draining = false;

  const keyring = config.credentialKeys ?? developmentKeyring(config.database.dataDir, logger);
  const runner = new ExecutionRunner({
    logger,
    instanceId: config.instanceId,
    prices: config.prices,
    heartbeatMs: Math.max(1000, Math.floor(config.orphanAfterMs / 4)),
    eventFlushMs: 250,
  });
  const cancelBus = createCancelBus(config.database.url, runner, logger);

  const handler = connectNodeAdapter({
    routes: routes({
      pageTokens: createPageTokens(config.pageTokenSecret),
      health,
      agentRetentionDays: config.agentRetentionDays,
      keyring,
      executions: {
        runner,
        cancelBus,
        instanceId: config.instanceId,
        defaultTimeoutMs: config.executionTimeoutMs,
        defaultDeadlineMs: config.defaultDeadlineMs,
        credentials: credentialLookup(keyring),
      },
    }),
    // Outermost first: every error is mapped; deadline and auth come before
    // validation, and validation before any database work.
    interceptors: [
      errorInterceptor(logger),
      drainInterceptor(() => draining),
      deadlineInterceptor(config.defaultDeadlineMs),
      authInterceptor(createAuthenticator(config.tokens)),
      validationInterceptor(),
      entityManagerInterceptor(orm),
    ],
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    shutdownSignal: abortInFlight.signal,
  });
  const cors = createCors(config.corsOrigins);
  const listener = createListener((req, res) => {
    if (!cors(req, res)) handler(req, res);
  }, config.tls);

  return {
    health,
    listen: (port, host) => listener.listen(port, host),
    async shutdown() {
      health.setServing(false);
      draining = true;
      health.close();
      const grace = setTimeout(() => abortInFlight.abort(), config.shutdownGraceMs);
      // Runs get the same grace as calls; streams following them end with them.
      await Promise.all([listener.close(config.shutdownGraceMs + 1000), runner.shutdown(config.shutdownGraceMs)]);
      clearTimeout(grace);
      await cancelBus.close();
      logger.info("server stopped");
    },
  };
}
