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
 * are lost, so after every (re)connection the node loads the bans in force again
 * (listen-connection.ts, as the account store does).
 *
 * While the database is away the writes fail (logged once per outage) and the node bans by its
 * own count (ClientLimits), as a single node does; failures it saw then are not added to the
 * cluster's count later.
 */
import { systemClock, type Clock, type Now } from "../../mail/clock.ts";
import type { SharedBans } from "../../policy/checks/client-limits.ts";
import { inTransaction, type PostgresPool } from "./postgres-pool.ts";
import { ListenConnection } from "./listen-connection.ts";

/** The NOTIFY channel; the payload is "<until> <address>" (until: ms of the writer's clock). */
export const AUTH_BANS_CHANNEL = "petrel_auth_bans";
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
  #connection: ListenConnection | null = null;

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
    await bans.#listen();
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
    this.#connection = await ListenConnection.open({
      pool: this.#pool, channel: AUTH_BANS_CHANNEL, label: "AUTH bans", timer: this.#timer,
      onNotification: (payload) => {
        const space = payload.indexOf(" ");
        const until = Number(payload.slice(0, space));
        if (space > 0 && Number.isFinite(until)) this.#learn(payload.slice(space + 1), until);
      },
      onListening: () => this.#load(),
      onError: this.#onError,
      onReconnect: this.#onReconnect,
    });
  }

  /** Stop listening once the writes under way are done (the pool is the caller's). */
  async close(): Promise<void> {
    await this.settled();
    await this.#connection?.close();
  }
}
