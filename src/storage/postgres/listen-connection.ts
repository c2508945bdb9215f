/**
 * One LISTEN connection of a node, kept up: a client of its own (a pooled connection may not hold
 * a LISTEN), reconnected with a doubling delay when it drops, and after every (re)connection the
 * owner loads afresh what it keeps in memory, since notifications sent while the connection was
 * down are lost. Used by the stores that keep a copy in memory and follow NOTIFY (the accounts,
 * the AUTH-failure bans).
 */
import pg from "pg";
import type { Clock } from "../../mail/clock.ts";
import type { PostgresPool } from "./postgres-pool.ts";

/** Reconnection: first wait, doubled up to the last. */
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 10_000;

export interface ListenConnectionOptions {
  /** Whose connection settings to use. */
  readonly pool: PostgresPool;
  readonly channel: string;
  /** What listens, in the connection's application_name and the messages ("accounts"). */
  readonly label: string;
  /** Times the reconnection. */
  readonly timer: Clock;
  readonly onNotification: (payload: string) => void;
  /** LISTEN is in place: load what may have been missed (a failure counts as a failed connection). */
  readonly onListening: () => Promise<void>;
  readonly onError: (message: string) => void;
  /** Up again after a loss, and loaded. */
  readonly onReconnect: () => void;
}

export class ListenConnection {
  readonly #o: ListenConnectionOptions;
  #client: pg.Client | null = null;
  #listening = false;
  #closed = false;
  #retry: unknown = null;
  #retryDelay = RECONNECT_FIRST_MS;

  private constructor(o: ListenConnectionOptions) {
    this.#o = o;
  }

  /** Connect, LISTEN and load once; rejects (and stays closed) when that first attempt fails. */
  static async open(o: ListenConnectionOptions): Promise<ListenConnection> {
    const l = new ListenConnection(o);
    try {
      await l.#connect();
    } catch (err) {
      await l.close();
      throw err;
    }
    return l;
  }

  /** LISTEN is in place now (notifications arrive). */
  get listening(): boolean {
    return this.#listening;
  }

  async #connect(): Promise<void> {
    const options = this.#o.pool.options;
    const client = new pg.Client({ ...options, application_name: `${options.application_name ?? "petrel"} ${this.#o.label}`.slice(0, 63) });
    client.on("notification", (n) => {
      if (n.channel === this.#o.channel && n.payload !== undefined) this.#o.onNotification(n.payload);
    });
    const lost = (why: string) => {
      if (this.#client !== client) return;
      this.#client = null;
      this.#listening = false;
      client.removeAllListeners("end");
      client.end().catch(() => undefined);
      if (this.#closed) return;
      this.#o.onError(`${this.#o.label}: the LISTEN connection to the database was lost (${why}); reconnecting`);
      this.#scheduleReconnect();
    };
    client.on("error", (err) => lost(err.message));
    client.on("end", () => lost("closed by the server"));
    this.#client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${this.#o.channel}`);
      this.#listening = true;
      this.#retryDelay = RECONNECT_FIRST_MS;
      await this.#o.onListening();
    } catch (err) {
      lost((err as Error).message);
      throw err;
    }
  }

  #scheduleReconnect(): void {
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(RECONNECT_MAX_MS, delay * 2);
    this.#retry = this.#o.timer.schedule(() => {
      this.#retry = null;
      if (this.#closed) return;
      this.#connect().then(() => this.#o.onReconnect(), () => undefined);
    }, delay);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry !== null) this.#o.timer.cancel(this.#retry);
    this.#retry = null;
    const client = this.#client;
    this.#client = null;
    this.#listening = false;
    if (client) {
      client.removeAllListeners("end");
      await client.end().catch(() => undefined);
    }
  }
}
