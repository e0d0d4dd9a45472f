import { purgeExpiredAgents } from "./agents/purge-job.ts";
import { loadConfig } from "./config.ts";
import { migrateUp, openDatabase } from "./database.ts";
import { assertRuntimeRole } from "./db/rls.ts";
import { failOrphans } from "./executions/orphans.ts";
import { applyRetention } from "./executions/retention.ts";
import { every } from "./jobs/periodic.ts";
import { createLogger } from "./log.ts";
import { createAppServer } from "./server.ts";

const config = loadConfig();
const logger = createLogger(config.logLevel);
if (config.developmentSecret) {
  logger.warn("using the built-in development JWT secret; set JWT_SECRET or JWT_JWKS_URL outside development");
}

const orm = await openDatabase({ ...config.database, log: (message) => logger.debug(message, { component: "orm" }) });
const applied = await migrateUp(orm);
// The service's own connection must be one row-level security holds.
await assertRuntimeRole(orm);
logger.info("database ready", {
  driver: config.database.url ? "postgresql" : "pglite",
  dataDir: config.database.url ? undefined : config.database.dataDir,
  migrationsApplied: applied,
});

// Executions this instance was running when it last stopped can never finish.
const orphans = await failOrphans(orm, { instanceId: config.instanceId, staleMs: config.orphanAfterMs });
if (orphans > 0) logger.warn("closed executions left running by an earlier run of this server", { count: orphans });

const server = createAppServer({ config, orm, logger });
const port = await server.listen(config.port, config.host);
server.health.setServing(true);
const jobs = [
  config.purgeIntervalMs > 0
    ? every(config.purgeIntervalMs, "purge expired agents", () => purgeExpiredAgents(orm), logger)
    : undefined,
  config.retentionIntervalMs > 0
    ? every(config.retentionIntervalMs, "execution retention", () => applyRetention(orm), logger)
    : undefined,
  // Runs of instances whose heartbeat stopped: they can never finish.
  every(config.orphanAfterMs / 3, "close orphaned executions", () => failOrphans(orm, { staleMs: config.orphanAfterMs }), logger),
];
logger.info("listening", { host: config.host, port, tls: Boolean(config.tls) });

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info("shutting down", { signal });
  try {
    for (const job of jobs) job?.stop();
    await server.shutdown();
    await orm.close();
    process.exit(0);
  } catch (err) {
    logger.error("unclean shutdown", { error: err });
    process.exit(1);
  }
}
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
