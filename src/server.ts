import type { MikroORM } from "@mikro-orm/core";
import { Code, ConnectError } from "@connectrpc/connect";
import { createAuthenticator } from "./auth/tokens.ts";
import { createPageTokens } from "./common/page-token.ts";
import type { Config } from "./config.ts";
import { developmentKeyring } from "./credentials/keyring.ts";
import { createCors } from "./pipeline/cors.ts";
import { createListener, type Handler } from "./pipeline/listener.ts";
import { createConnectPath } from "./pipeline/connect/handler.ts";
import { createGrpcPath } from "./pipeline/grpc/server.ts";
import { createAdmission } from "./pipeline/admission/admission.ts";
import { appDatabaseUrl, connectionsOf } from "./db/orm.ts";
import { createOutbound } from "./common/outbound.ts";
import { createCancelBus } from "./executions/cancel-bus.ts";
import { credentialLookup } from "./executions/credential-lookup.ts";
import { ExecutionRunner } from "./executions/runner.ts";
import { admissionInterceptor } from "./pipeline/admission/admission-interceptor.ts";
import { deadlineInterceptor } from "./pipeline/interceptors/deadline.ts";
import { drainInterceptor } from "./pipeline/interceptors/drain.ts";
import { entityManagerInterceptor } from "./pipeline/interceptors/entity-manager.ts";
import { errorInterceptor, toConnectError, malformedRequestError } from "./pipeline/interceptors/errors.ts";
import { validationInterceptor } from "./pipeline/interceptors/validation.ts";
import { postgresBuckets } from "./pipeline/admission/postgres-buckets.ts";
import { createEarlyAdmission } from "./pipeline/admission/early-admission.ts";
import { TenantLines } from "./pipeline/admission/lines.ts";
import { quotaCounters } from "./entities.ts";
import { tenantLimitsReader } from "./tenants/settings.repository.ts";
import { createQuotas } from "./tenants/quotas.ts";
import { RateLimiter } from "./pipeline/admission/rate-limiter.ts";
import { redisBuckets } from "./pipeline/admission/redis-buckets.ts";
import type { Logger } from "./log.ts";
import { createDatabaseProbe } from "./platform/database-probe.ts";
import { createHealth, type HealthState } from "./platform/health.ts";
import { allServices, apiServices, routes } from "./routes.ts";

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
  // Listens as the service's own database role, like every other connection.
  const cancelBus = createCancelBus(appDatabaseUrl(config.database), runner, logger);

  // Token buckets shared by every instance: Redis when configured, else the database.
  const limiter = new RateLimiter({
    store: config.redisUrl ? redisBuckets(config.redisUrl) : postgresBuckets(orm),
    readLimits: tenantLimitsReader(orm, config.tenantLimits),
    cacheMs: config.tenantSettingsCacheMs,
    logger,
  });
  const quotas = createQuotas(config.tenantLimits, quotaCounters);
  const authenticator = createAuthenticator(config.tokens);
  // Each tenant's fair share: half the connections by default, so one
  // tenant's calls leave the other half to the rest (on PGlite, with its one
  // connection: one call each). Work-conserving: a tenant alone may borrow
  // beyond its share up to every connection but one (the one kept free is
  // the next tenant's first call's, should the borrowed ones be stuck);
  // once another tenant calls, each keeps to its share.
  const connections = connectionsOf(orm);
  const shares = new TenantLines(config.tenantCallsInFlight ?? Math.ceil(connections / 2), Math.max(0, connections - 1));
  // Admission, one step: token → principal → role → rate limit → fair share.
  // Both transport paths run it once per call, before the call is decoded
  // (gRPC path) or read (Connect path, when its token is known; else in the
  // admission interceptor).
  const admit = createAdmission({ authenticator, limiter, shares });
  const early = createEarlyAdmission({
    services: apiServices,
    admit,
    authenticator,
    maxBodyBytes: config.maxMessageBytes,
    defaultDeadlineMs: config.defaultDeadlineMs,
    maxTimeoutMs: config.maxTimeoutMs,
    draining: () => draining,
    logger,
  });

  const services = routes({
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
      outbound: createOutbound({ allowPrivate: config.outboundAllowPrivate }),
      quotas,
    },
    quotas,
    tenantLimits: config.tenantLimits,
    limiter,
  });
  const handler = createConnectPath({
    services,
    // Outermost first: every error is mapped; the deadline and admission
    // (for the calls not admitted before they were read) come before
    // validation, and validation before any database work.
    interceptors: [
      errorInterceptor(logger),
      drainInterceptor(() => draining),
      deadlineInterceptor(config.defaultDeadlineMs),
      admissionInterceptor(admit),
      validationInterceptor(),
      entityManagerInterceptor(orm),
    ],
    maxMessageBytes: config.maxMessageBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    shutdownSignal: abortInFlight.signal,
    contextValues: (req) => early.contextValues(req),
  });
  const cors = createCors(config.corsOrigins);
  const front: Handler = (req, res) => {
    if (!cors(req, res)) early.handle(req, res, () => handler(req, res));
  };
  // gRPC over h2c: a grpc-js server, admission once before the body is
  // decoded, then the interceptors that do not decide admission.
  const grpcPath =
    config.grpcPath === "grpc-js"
      ? createGrpcPath({
          services,
          admit,
          draining: () => draining,
          interceptors: [
            errorInterceptor(logger),
            drainInterceptor(() => draining),
            deadlineInterceptor(config.defaultDeadlineMs),
            validationInterceptor(),
            entityManagerInterceptor(orm),
          ],
          toConnectError: (err, where, signal) => toConnectError(err, logger, where, signal),
          // Same answer as the Connect path for a body that does not decode.
          undecodable: malformedRequestError,
          maxMessageBytes: config.maxMessageBytes,
          maxTimeoutMs: config.maxTimeoutMs,
          defaultDeadlineMs: config.defaultDeadlineMs,
          shutdownSignal: abortInFlight.signal,
          otherStreams: front,
        })
      : undefined;
  // Health follows the database: NOT_SERVING while it does not answer. The
  // embedded PGlite lives in this process; there is nothing to probe.
  const probe = config.database.url
    ? createDatabaseProbe({
        orm,
        intervalMs: config.databaseProbeIntervalMs,
        timeoutMs: config.databaseProbeTimeoutMs,
        onChange: (reachable) => health.setDatabaseReachable(reachable),
        logger,
      })
    : undefined;
  const listener = createListener(front, config.tls, grpcPath && ((socket) => grpcPath.injectConnection(socket)));

  return {
    health,
    async listen(port, host) {
      const bound = await listener.listen(port, host);
      probe?.start();
      return bound;
    },
    async shutdown() {
      health.setServing(false);
      draining = true;
      health.close();
      const grace = setTimeout(
        () => abortInFlight.abort(new ConnectError("the server shut down before the call finished; retry", Code.Unavailable)),
        config.shutdownGraceMs,
      );
      grpcPath?.drain(config.shutdownGraceMs);
      // Runs get the same grace as calls; streams following them end with them.
      await Promise.all([listener.close(config.shutdownGraceMs + 1000), runner.shutdown(config.shutdownGraceMs)]);
      clearTimeout(grace);
      await cancelBus.close();
      await limiter.close();
      await probe?.stop();
      logger.info("server stopped");
    },
  };
}
