/**
 * The connection pool to the PostgreSQL that holds a cluster's queue, messages and accounts
 * (`storage.kind: postgres`). One pool per process, made here and handed to the stores; every
 * connection is named `petrel <node>` in pg_stat_activity so an operator sees which node holds
 * what. The password is never logged: errors name the server by `describePostgres`.
 */
import pg from "pg";
import { readFileSync } from "node:fs";

export interface PostgresSettings {
  /** postgres://user[:password]@host[:port]/database[?…] */
  readonly url: string;
  /** A file holding the password, when the URL carries none (kept out of the config file). */
  readonly passwordFile?: string | undefined;
  /** Connections this node may hold at once. */
  readonly poolSize: number;
  /** This node's name in the cluster. */
  readonly node: string;
}

export type PostgresPool = pg.Pool;
export type PostgresClient = pg.PoolClient;

/** How long a node waits for a connection before the operation fails (and the client gets a 451). */
const CONNECT_TIMEOUT_MS = 5_000;

export function openPostgresPool(settings: PostgresSettings, onError: (message: string) => void): PostgresPool {
  const pool = new pg.Pool({
    connectionString: withPassword(settings),
    max: settings.poolSize,
    application_name: `petrel ${settings.node}`.slice(0, 63),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // An idle connection the server ends (a restart, a failover) must not crash the process: the
  // pool drops it and the next query opens a new one.
  pool.on("error", (err) => onError(`PostgreSQL ${describePostgres(settings.url)}: idle connection lost: ${err.message}`));
  // pg-pool takes its idle listener off a connection as it hands it out and calls the acquirer
  // back at once — often from inside the socket's data handler, which then goes on parsing what
  // else arrived: a server shutting down sends ReadyForQuery and FATAL 57P01 in one read, so the
  // error is emitted before withClient's await resumes to listen. Listening from 'acquire' to
  // 'release' closes that window; withClient reads what was heard.
  pool.on("acquire", (client) => client.on("error", noteLoss));
  pool.on("release", (_err, client) => client.removeListener("error", noteLoss));
  return pool;
}

/** Errors a checked-out connection emitted, by connection. */
const lostWhileOut = new WeakMap<object, Error>();

function noteLoss(this: object, err: Error): void {
  if (!lostWhileOut.has(this)) lostWhileOut.set(this, err);
}

/** The URL with the password of `passwordFile` (the pg client lets the URL's fields win over separate ones). */
function withPassword(settings: PostgresSettings): string {
  if (settings.passwordFile === undefined) return settings.url;
  const u = new URL(settings.url);
  u.password = encodeURIComponent(readFileSync(settings.passwordFile, "utf8").split(/\r?\n/)[0]);
  return u.toString();
}

/** The URL without its password, for logs and errors. */
export function describePostgres(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "(an unparsable PostgreSQL URL)";
  }
}

/**
 * Run `work` on one connection of the pool. While a connection is checked out, pg has no one to
 * tell of an error the server sends between two queries (57P01 when it shuts down) and throws it
 * — a crash; it is caught here. A connection whose work failed is closed, not given back: after
 * a lost server it is dead, and after any other error a new one costs little.
 */
export async function withClient<T>(pool: PostgresPool, work: (client: PostgresClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let failed: Error | undefined = lostWhileOut.get(client);
  if (failed !== undefined) {
    client.release(failed);
    throw failed;
  }
  const onError = (err: Error): void => {
    failed ??= err;
  };
  client.on("error", onError);
  try {
    return await work(client);
  } catch (err) {
    failed ??= err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    client.removeListener("error", onError);
    client.release(failed);
  }
}

/** Run `work` in one transaction on one connection; rolled back if it throws. */
export async function inTransaction<T>(pool: PostgresPool, work: (client: PostgresClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query("BEGIN");
    try {
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    }
  });
}
