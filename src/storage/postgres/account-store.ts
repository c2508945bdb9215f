/**
 * PostgresAccountStore: the accounts of a cluster (`storage.kind: postgres`) in the shared
 * database — tables account_domain, account_user, account_alias — with the same rules, checks and
 * AccountError codes as the file (SnapshotAccountStore), and the config file's bootstrap accounts
 * merged in the same way.
 *
 * The SMTP path asks accounts synchronously (`mayUseSender`) and for every AUTH and RCPT, so each
 * node keeps the whole stored data in memory, as the file store does. A change runs in one
 * transaction under an advisory lock (writers on every node and every CLI are serialised, and each
 * check sees the data as it is at that instant), bumps the counter in account_change and announces
 * the new version with NOTIFY, delivered only once the transaction commits. Every server node
 * LISTENs on a connection of its own and loads the data again when it hears of a newer version.
 * Notifications sent while that connection is down are lost, so after every (re)connection the node
 * loads everything again. A full load rather than a per-row delta because accounts change rarely
 * (a person at a CLI) and a load is a few indexed scans; it keeps one code path for "start",
 * "changed" and "reconnected".
 *
 * Between a commit on one node and the notification on another there is a moment (milliseconds);
 * AUTH and a "no such user" answer ask the counter first (one indexed row), so a user added or a
 * password changed anywhere counts at once. While the LISTEN connection is down the node answers
 * from its last copy rather than wait for a database that is probably away.
 */
import type { Clock } from "../../mail/clock.ts";
import { systemClock } from "../../mail/clock.ts";
import type { Config } from "../../config/schema.ts";
import { inTransaction, type PostgresClient, type PostgresPool } from "./postgres-pool.ts";
import { ListenConnection } from "./listen-connection.ts";
import type { AccountsFile } from "../../accounts/accounts-file.ts";
import { SnapshotAccountStore, type AccountRules, type AccountsSource } from "../../accounts/snapshot-account-store.ts";

/** The NOTIFY channel; the payload is the new version of account_change. */
export const ACCOUNTS_CHANNEL = "petrel_accounts";
/** The advisory lock every account writer takes ("account" in ASCII); any number distinct from the migrations'. */
const ACCOUNTS_LOCK = 0x6163636f756e74;

export interface PostgresAccountStoreOptions extends AccountRules {
  readonly pool: PostgresPool;
  /**
   * Keep the copy current with LISTEN (a server node). False for a process that does one thing
   * and exits (the CLI): it loads once, and its own changes notify the nodes.
   */
  readonly listen?: boolean;
  /** Times the reconnection of the LISTEN connection. */
  readonly timer?: Clock;
  /** A load or the LISTEN connection failed (the last good copy stays in use). */
  readonly onError?: (message: string) => void;
  /** The LISTEN connection is up again and the data was loaded afresh. */
  readonly onReconnect?: () => void;
}

interface Loaded {
  readonly data: AccountsFile;
  readonly version: number;
}

const byKey = <T>(key: (x: T) => string) => (a: T, b: T) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

/** Everything stored, as one consistent picture (call inside one transaction). */
async function readAll(c: PostgresClient | PostgresPool): Promise<Loaded> {
  const version = Number((await c.query<{ version: string }>("SELECT version FROM account_change WHERE id = 1")).rows[0].version);
  const domains = (await c.query<{ name: string }>("SELECT name FROM account_domain")).rows.map((r) => r.name).sort();
  const users = (await c.query<{ address: string; password: string; scram: string | null; quota: string | null; created_at: string; admin: boolean }>(
    "SELECT address, password, scram, quota, round(extract(epoch FROM created_at) * 1000)::bigint AS created_at, admin FROM account_user",
  )).rows.map((r) => ({
    address: r.address,
    password: r.password,
    ...(r.scram !== null ? { scram: r.scram } : {}),
    ...(r.quota !== null ? { quota: Number(r.quota) } : {}),
    createdAt: Number(r.created_at),
    ...(r.admin ? { admin: true } : {}),
  })).sort(byKey((u) => u.address));
  const aliases = (await c.query<{ source: string; targets: string[] }>("SELECT source, targets FROM account_alias")).rows
    .map((r) => ({ source: r.source, targets: r.targets })).sort(byKey((a) => a.source));
  return { version, data: { version: 1, domains, users, aliases } };
}

/** Rows of `after` that are new or differ from `before`, and keys of `before` gone from `after`. */
function diff<T>(before: readonly T[], after: readonly T[], key: (x: T) => string): { upsert: T[]; remove: string[] } {
  const old = new Map(before.map((x) => [key(x), JSON.stringify(x)]));
  const now = new Set(after.map(key));
  return {
    upsert: after.filter((x) => old.get(key(x)) !== JSON.stringify(x)),
    remove: [...old.keys()].filter((k) => !now.has(k)),
  };
}

/** Write the difference between two versions of the data (inside the writer's transaction). */
async function writeChanges(c: PostgresClient, before: AccountsFile, after: AccountsFile): Promise<void> {
  const d = diff(before.domains, after.domains, (x) => x);
  if (d.remove.length > 0) await c.query("DELETE FROM account_domain WHERE name = ANY($1)", [d.remove]);
  if (d.upsert.length > 0) await c.query("INSERT INTO account_domain (name) SELECT unnest($1::text[])", [d.upsert]);
  const u = diff(before.users, after.users, (x) => x.address);
  if (u.remove.length > 0) await c.query("DELETE FROM account_user WHERE address = ANY($1)", [u.remove]);
  for (const x of u.upsert) {
    await c.query(
      `INSERT INTO account_user (address, password, scram, quota, created_at, admin)
       VALUES ($1, $2, $3, $4, to_timestamp($5::double precision / 1000), $6)
       ON CONFLICT (address) DO UPDATE SET password = $2, scram = $3, quota = $4, created_at = to_timestamp($5::double precision / 1000), admin = $6`,
      [x.address, x.password, x.scram ?? null, x.quota ?? null, x.createdAt, x.admin === true],
    );
  }
  const a = diff(before.aliases, after.aliases, (x) => x.source);
  if (a.remove.length > 0) await c.query("DELETE FROM account_alias WHERE source = ANY($1)", [a.remove]);
  for (const x of a.upsert) {
    await c.query("INSERT INTO account_alias (source, targets) VALUES ($1, $2) ON CONFLICT (source) DO UPDATE SET targets = $2", [x.source, x.targets]);
  }
}

/** The accounts tables as an AccountsSource, with the copy in memory kept current by LISTEN. */
class PostgresAccountsSource implements AccountsSource {
  readonly #pool: PostgresPool;
  readonly #clock: Clock;
  readonly #onError: (message: string) => void;
  readonly #onReconnect: () => void;
  /** Nothing until the first load (open() waits for it). */
  #loaded: Loaded = { version: -1, data: { version: 1, domains: [], users: [], aliases: [] } };
  #connection: ListenConnection | null = null;
  #closed = false;
  #loads: Promise<unknown> = Promise.resolve();

  constructor(pool: PostgresPool, options: PostgresAccountStoreOptions) {
    this.#pool = pool;
    this.#clock = options.timer ?? systemClock;
    this.#onError = options.onError ?? (() => undefined);
    this.#onReconnect = options.onReconnect ?? (() => undefined);
  }

  static async load(pool: PostgresPool): Promise<Loaded> {
    return inTransaction(pool, async (c) => {
      await c.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      return readAll(c);
    });
  }

  current(): AccountsFile {
    return this.#loaded.data;
  }

  /** The version this copy is at (tests; status). */
  get version(): number {
    return this.#loaded.version;
  }

  async update(change: (data: AccountsFile) => void): Promise<AccountsFile> {
    const stored = await inTransaction(this.#pool, async (c) => {
      await c.query("SELECT pg_advisory_xact_lock($1)", [ACCOUNTS_LOCK]);
      const before = await readAll(c);
      const data = structuredClone(before.data);
      change(data);
      await writeChanges(c, before.data, data);
      const version = Number((await c.query<{ version: string }>("UPDATE account_change SET version = version + 1 WHERE id = 1 RETURNING version")).rows[0].version);
      await c.query("SELECT pg_notify($1, $2)", [ACCOUNTS_CHANNEL, String(version)]);
      return { data, version };
    });
    this.#adopt(stored);
    return stored.data;
  }

  /** The one load of a process that does not listen. */
  async loadOnce(): Promise<void> {
    await this.#reload();
  }

  async catchUp(): Promise<boolean> {
    if (this.#connection?.listening !== true) return false;
    try {
      const r = await this.#pool.query<{ version: string }>("SELECT version FROM account_change WHERE id = 1");
      const version = Number(r.rows[0].version);
      return version > this.#loaded.version ? this.#reload(version) : false;
    } catch (err) {
      this.#onError(`accounts: cannot ask the database for changes: ${(err as Error).message}`);
      return false;
    }
  }

  /** Take a newer version (never an older one: loads and writes may finish out of order). */
  #adopt(l: Loaded): boolean {
    if (l.version <= this.#loaded.version) return false;
    this.#loaded = l;
    return true;
  }

  /**
   * Load everything again when `atLeast` is newer than the copy, or always (`atLeast` absent: after
   * a (re)connection, when even an older version — a restored database — is the truth). Loads run
   * one at a time.
   */
  #reload(atLeast?: number): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      if (atLeast !== undefined && atLeast <= this.#loaded.version) return false;
      const l = await PostgresAccountsSource.load(this.#pool);
      if (atLeast !== undefined) return this.#adopt(l);
      this.#loaded = l;
      return true;
    };
    const p = this.#loads.then(run, run);
    this.#loads = p.catch((err: Error) => this.#onError(`accounts: loading from the database failed; keeping the last copy: ${err.message}`));
    return p;
  }

  /** Open the LISTEN connection, then load (changes announced while it was down are otherwise lost). */
  async listen(): Promise<void> {
    this.#connection = await ListenConnection.open({
      pool: this.#pool, channel: ACCOUNTS_CHANNEL, label: "accounts", timer: this.#clock,
      onNotification: (payload) => void this.#reload(Number(payload)).catch(() => undefined),
      onListening: async () => void (await this.#reload()),
      onError: this.#onError,
      onReconnect: this.#onReconnect,
    });
    if (this.#closed) await this.#connection.close();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#connection?.close();
    await this.#loads.catch(() => undefined);
  }
}

export class PostgresAccountStore extends SnapshotAccountStore {
  readonly #source: PostgresAccountsSource;

  private constructor(source: PostgresAccountsSource, options: PostgresAccountStoreOptions) {
    super(source, options);
    this.#source = source;
  }

  /** Load the accounts and, unless `listen: false`, keep them current (resolves once both are done). */
  static async open(options: PostgresAccountStoreOptions): Promise<PostgresAccountStore> {
    const source = new PostgresAccountsSource(options.pool, options);
    try {
      if (options.listen !== false) await source.listen();
      else await source.loadOnce();
    } catch (err) {
      await source.close();
      throw err;
    }
    return new PostgresAccountStore(source, options);
  }

  /** The store of a loaded configuration on its database (`storage.kind: postgres`). */
  static fromConfig(
    config: Pick<Config, "domains" | "users" | "delivery" | "postmaster">, pool: PostgresPool,
    options: Omit<PostgresAccountStoreOptions, "pool"> = {},
  ): Promise<PostgresAccountStore> {
    return PostgresAccountStore.open({
      pool, configDomains: config.domains, configUsers: config.users,
      subaddressSeparator: config.delivery.subaddressSeparator, postmaster: config.postmaster, ...options,
    });
  }

  /** The account_change version this node's copy is at. */
  get version(): number {
    return this.#source.version;
  }

  /** Stop listening (the pool is the caller's). */
  close(): Promise<void> {
    return this.#source.close();
  }
}
