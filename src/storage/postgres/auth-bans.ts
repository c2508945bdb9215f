/**
 * PostgresAuthBans: the AUTH-failure bans of a cluster (`storage.kind: postgres`, migration 8), so
 * that a client guessing passwords through a load balancer gets `limits.authFailuresPerClient`
 * attempts in all, not that many per node.
 *
 * Each failure is counted in auth_failure by one upsert (the window restarts once
 * `limits.authBanTime` has passed since it began, as ClientLimits counts in memory); the failure
 * that reaches the limit writes the ban in auth_ban and announces it with NOTIFY, delivered once
 * the transaction commits. Every node LISTENs on a connection of its own and keeps the banned
 * addresses in memory: the SMTP path asks that copy and never waits for the database, and a
 * failure is written in the background. Notifications sent while the LISTEN connection is down
 * are lost, so after every (re)connection the node loads the bans in force again (the account
 * store does the same for the same reason).
 *
 * While the database is away the writes fail (logged once per outage) and the node bans by its
 * own count (ClientLimits), as a single node does; failures it saw then are not added to the
 * cluster's count later.
 */
import pg from "pg";
import { systemClock, type Clock, type Now } from "../../mail/clock.ts";
import type { SharedBans } from "../../policy/checks/client-limits.ts";
import { inTransaction, type PostgresPool } from "./postgres-pool.ts";

/** The NOTIFY channel; the payload is "<until> <address>" (until: ms of the writer's clock). */
export const AUTH_BANS_CHANNEL = "petrel_auth_bans";
/** Reconnection of the LISTEN connection: first wait, doubled up to the last. */
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/** Bans kept in memory before the first sweep of ended ones. */
const SWEEP_MIN = 1024;

export interface PostgresAuthBansOptions {
  readonly pool: PostgresPool;
  /** The time of failures and bans (the nodes of a cluster agree on it closely enough for minutes-long bans). */
  readonly clock?: Now;
  /** Times the reconnection of the LISTEN connection (the system clock when absent). */
  readonly timer?: Clock;
  /** A write or the LISTEN connection failed (the node's own count still bans). */
  readonly onError?: (message: string) => void;
  /** The LISTEN connection is up again and the bans were loaded afresh. */
  readonly onReconnect?: () => void;
}

const RECORD_FAILURE = `
  INSERT INTO auth_failure AS f (address, failures, since) VALUES ($1, 1, $2)
  ON CONFLICT (address) DO UPDATE SET
    failures = CASE WHEN $2 - f.since > $3 THEN 1 ELSE f.failures + 1 END,
    since    = CASE WHEN $2 - f.since > $3 THEN $2 ELSE f.since END
  RETURNING failures`;

export class PostgresAuthBans implements SharedBans {
  readonly #pool: PostgresPool;
  readonly #clock: Now;
  readonly #timer: Clock;
  readonly #onError: (message: string) => void;
  readonly #onReconnect: () => void;
  /** Address → until (ms): the bans this node has heard of. */
  readonly #banned = new Map<string, number>();
  #sweepAt = SWEEP_MIN;
  readonly #writes = new Set<Promise<void>>();
  #writeFailing = false;
  #listener: pg.Client | null = null;
  #closed = false;
  #retry: unknown = null;
  #retryDelay = RECONNECT_FIRST_MS;

  private constructor(options: PostgresAuthBansOptions) {
    this.#pool = options.pool;
    this.#clock = options.clock ?? systemClock;
    this.#timer = options.timer ?? systemClock;
    this.#onError = options.onError ?? (() => undefined);
    this.#onReconnect = options.onReconnect ?? (() => undefined);
  }

  /** Listen for bans and load those in force (resolves once both are done). */
  static async open(options: PostgresAuthBansOptions): Promise<PostgresAuthBans> {
    const bans = new PostgresAuthBans(options);
    try {
      await bans.#listen();
    } catch (err) {
      await bans.close();
      throw err;
    }
    return bans;
  }

  isBanned(address: string): boolean {
    const until = this.#banned.get(address);
    if (until === undefined) return false;
    if (until > this.#clock.now()) return true;
    this.#banned.delete(address);
    return false;
  }

  authFailed(address: string, limit: { readonly failures: number; readonly banTime: number }): void {
    const write = this.#record(address, limit).then(
      () => {
        this.#writeFailing = false;
      },
      (err: unknown) => {
        if (this.#writeFailing) return;
        this.#writeFailing = true;
        this.#onError(`AUTH bans: cannot count a failure in the database (${(err as Error).message}); this node bans by its own count until it can`);
      },
    );
    this.#writes.add(write);
    void write.finally(() => this.#writes.delete(write));
  }

  /** The banned addresses this node knows, with their ends (status, tests). */
  banned(): Map<string, number> {
    for (const address of [...this.#banned.keys()]) this.isBanned(address);
    return new Map(this.#banned);
  }

  /** Resolves once every failure told so far is written (or failed). */
  async settled(): Promise<void> {
    while (this.#writes.size > 0) await Promise.all([...this.#writes]);
  }

  async #record(address: string, limit: { readonly failures: number; readonly banTime: number }): Promise<void> {
    const now = this.#clock.now();
    const until = await inTransaction(this.#pool, async (c) => {
      // Expired rows go first: both tables stay as small as the addresses of the last window.
      await c.query("DELETE FROM auth_failure WHERE since < $1", [now - limit.banTime]);
      await c.query("DELETE FROM auth_ban WHERE until <= $1", [now]);
      const failures = (await c.query<{ failures: number }>(RECORD_FAILURE, [address, now, limit.banTime])).rows[0].failures;
      if (failures < limit.failures) return null;
      const r = await c.query<{ until: string }>(
        `INSERT INTO auth_ban (address, until) VALUES ($1, $2)
         ON CONFLICT (address) DO UPDATE SET until = greatest(auth_ban.until, EXCLUDED.until) RETURNING until`,
        [address, now + limit.banTime],
      );
      const until = Number(r.rows[0].until);
      await c.query("SELECT pg_notify($1, $2)", [AUTH_BANS_CHANNEL, `${until} ${address}`]);
      return until;
    });
    if (until !== null) this.#learn(address, until);
  }

  /** A ban heard of (never shortened: the later end wins). */
  #learn(address: string, until: number): void {
    if (until <= (this.#banned.get(address) ?? 0)) return;
    this.#banned.set(address, until);
    // An address banned once and never seen again would stay: ended bans go whenever the map has
    // doubled since the last sweep (amortised constant time per ban).
    if (this.#banned.size <= this.#sweepAt) return;
    const now = this.#clock.now();
    for (const [a, u] of this.#banned) if (u <= now) this.#banned.delete(a);
    this.#sweepAt = Math.max(SWEEP_MIN, 2 * this.#banned.size);
  }

  async #load(): Promise<void> {
    const r = await this.#pool.query<{ address: string; until: string }>("SELECT address, until FROM auth_ban WHERE until > $1", [this.#clock.now()]);
    for (const row of r.rows) this.#learn(row.address, Number(row.until));
  }

  /** Open the LISTEN connection, then load (bans announced while it was down are otherwise lost). */
  async #listen(): Promise<void> {
    const options = this.#pool.options;
    const client = new pg.Client({ ...options, application_name: `${options.application_name ?? "petrel"} bans`.slice(0, 63) });
    client.on("notification", (n) => {
      if (n.channel !== AUTH_BANS_CHANNEL || n.payload === undefined) return;
      const space = n.payload.indexOf(" ");
      const until = Number(n.payload.slice(0, space));
      if (space > 0 && Number.isFinite(until)) this.#learn(n.payload.slice(space + 1), until);
    });
    const lost = (why: string) => {
      if (this.#listener !== client) return;
      this.#listener = null;
      client.removeAllListeners("end");
      client.end().catch(() => undefined);
      if (this.#closed) return;
      this.#onError(`AUTH bans: the LISTEN connection to the database was lost (${why}); reconnecting`);
      this.#scheduleReconnect();
    };
    client.on("error", (err) => lost(err.message));
    client.on("end", () => lost("closed by the server"));
    this.#listener = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${AUTH_BANS_CHANNEL}`);
      this.#retryDelay = RECONNECT_FIRST_MS;
      await this.#load();
    } catch (err) {
      lost((err as Error).message);
      throw err;
    }
  }

  #scheduleReconnect(): void {
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(RECONNECT_MAX_MS, delay * 2);
    this.#retry = this.#timer.schedule(() => {
      this.#retry = null;
      if (this.#closed) return;
      this.#listen().then(() => this.#onReconnect(), () => undefined);
    }, delay);
  }

  /** Stop listening once the writes under way are done (the pool is the caller's). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry !== null) this.#timer.cancel(this.#retry);
    await this.settled();
    const client = this.#listener;
    this.#listener = null;
    if (client) {
      client.removeAllListeners("end");
      await client.end().catch(() => undefined);
    }
  }
}
