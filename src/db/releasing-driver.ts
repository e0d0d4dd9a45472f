import type { Configuration } from "@mikro-orm/core";
import { PostgreSqlConnection, PostgreSqlDriver } from "@mikro-orm/postgresql";
import type {
  CompiledQuery,
  DatabaseConnection,
  Dialect,
  Driver,
  QueryCompiler,
  QueryResult,
  TransactionSettings,
} from "kysely";
import { quietCancel, quietWhenAbandoned, type Note } from "./abandoned-queries.ts";
import { isConnectionFailure } from "./connection-failures.ts";

/*
 * MikroORM runs transactions through kysely's controlled transactions,
 * which hand their pooled connection back only when BEGIN, COMMIT or
 * ROLLBACK succeeds. On a connection that died (pg_terminate_backend, a
 * restart, a network cut) the ROLLBACK that follows the failure fails too,
 * so the connection is never released: each one a pool slot lost for good,
 * until every call waits for a connection that never comes. Here a BEGIN or
 * ROLLBACK that fails because the connection is dead does not fail: the
 * server has rolled the transaction back with the connection, and the
 * connection goes back to the pool, which discards it (pg-pool drops clients
 * that are no longer queryable). The query that met the failure still
 * fails, so callers see it. A ROLLBACK is always tried first: an error that
 * merely carries a connection-class SQLSTATE on a live connection (a
 * trigger can raise any) leaves no transaction open behind it.
 */

/** A pooled connection, and the failure that broke it, if any. */
class Guarded implements DatabaseConnection {
  readonly inner: DatabaseConnection;
  broken: unknown;
  readonly #note: Note;

  constructor(inner: DatabaseConnection, note: Note) {
    this.inner = inner;
    this.#note = note;
    // Kysely looks for these to cancel queries (inflightQueryAbortStrategy); see abandoned-queries.ts.
    if (inner.cancelQuery) this.cancelQuery = quietCancel((provider) => inner.cancelQuery!(provider), note);
    if (inner.killSession) this.killSession = (provider) => inner.killSession!(provider);
    if (inner.collectSessionInfo) this.collectSessionInfo = () => inner.collectSessionInfo!();
  }

  cancelQuery?: DatabaseConnection["cancelQuery"];
  killSession?: DatabaseConnection["killSession"];
  collectSessionInfo?: DatabaseConnection["collectSessionInfo"];

  executeQuery<R>(query: CompiledQuery, options?: Parameters<DatabaseConnection["executeQuery"]>[1]): Promise<QueryResult<R>> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    return quietWhenAbandoned(this.inner.executeQuery<R>(query, options), options?.signal, this.#note);
  }

  streamQuery<R>(query: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    if (this.broken !== undefined) throw this.broken;
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

/** A kysely driver that releases connections whose transaction statements failed on a dead connection. */
class ReleasingDriver implements Driver {
  readonly #inner: Driver;
  readonly #wrapped = new WeakMap<DatabaseConnection, Guarded>();
  readonly #note: Note;

  constructor(inner: Driver, note: Note) {
    this.#inner = inner;
    this.#note = note;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(options?: Parameters<Driver["acquireConnection"]>[0]): Promise<DatabaseConnection> {
    const inner = await this.#inner.acquireConnection(options);
    let guarded = this.#wrapped.get(inner);
    if (!guarded) this.#wrapped.set(inner, (guarded = new Guarded(inner, this.#note)));
    guarded.broken = undefined;
    return guarded;
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const guarded = connection as Guarded;
    try {
      await this.#inner.beginTransaction(guarded.inner, settings);
    } catch (err) {
      if (!isConnectionFailure(err)) throw err;
      // The transaction's first query fails with this; its rollback releases the connection.
      guarded.broken = err;
    }
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const guarded = connection as Guarded;
    if (guarded.broken !== undefined) throw guarded.broken;
    // On failure the caller rolls back next (MikroORM does), which releases the connection.
    await this.#inner.commitTransaction(guarded.inner);
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const guarded = connection as Guarded;
    if (guarded.broken !== undefined) return;
    try {
      await this.#inner.rollbackTransaction(guarded.inner);
    } catch (err) {
      if (!isConnectionFailure(err)) throw err;
      guarded.broken = err;
    }
  }

  savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    return this.#inner.savepoint!((connection as Guarded).inner, name, compile);
  }

  rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    return this.#inner.rollbackToSavepoint!((connection as Guarded).inner, name, compile);
  }

  releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    return this.#inner.releaseSavepoint!((connection as Guarded).inner, name, compile);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection((connection as Guarded).inner);
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}

/** MikroORM's PostgreSQL connection with the releasing driver under it. */
class ReleasingConnection extends PostgreSqlConnection {
  override createKyselyDialect(overrides: Parameters<PostgreSqlConnection["createKyselyDialect"]>[0]) {
    const dialect = super.createKyselyDialect(overrides);
    // Into the ORM log (the server's logger, at debug), never the console.
    const logger = this.config.getLogger();
    const note: Note = (message) => logger.log("info", message, { enabled: true });
    const wrapped: Dialect = {
      createDriver: () => new ReleasingDriver(dialect.createDriver(), note),
      createQueryCompiler: () => dialect.createQueryCompiler(),
      createAdapter: () => dialect.createAdapter(),
      createIntrospector: (db) => dialect.createIntrospector(db),
    };
    return wrapped as ReturnType<PostgreSqlConnection["createKyselyDialect"]>;
  }
}

/** MikroORM's PostgreSQL driver whose connections are always given back to the pool (see above). */
export class ReleasingPostgreSqlDriver extends PostgreSqlDriver {
  constructor(config: Configuration) {
    super(config);
    (this as unknown as { connection: PostgreSqlConnection }).connection = new ReleasingConnection(this.config);
  }
}
