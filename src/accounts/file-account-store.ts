/**
 * FileAccountStore: the embedded AccountStore, one JSON file `<dataDir>/accounts.json` merged with
 * the bootstrap accounts of the config file (the rules are SnapshotAccountStore's).
 *
 * Why a JSON file with a lock and rename rather than an embedded database: Petrel may not add npm
 * packages, and Node 24's built-in `node:sqlite` is still experimental (and would tie the format to
 * a native build). The data is small (domains, users, aliases: kilobytes to a few megabytes), read
 * constantly and written rarely, by a person at a CLI. So the whole file is the snapshot: the
 * server holds it in memory and answers lookups without I/O; a writer takes an exclusive lock file
 * (see lock-file.ts), re-reads the file, changes it, writes a temporary file in the same directory,
 * fsyncs it, renames it over the old one and fsyncs the directory. A reader therefore sees either
 * the old or the new file, never a torn one, and a crash leaves one of the two. Concurrent writers
 * (a CLI while the server runs, two CLIs) are serialised by the lock, so no change is lost. Other
 * processes notice a change by the file's identity (inode, size, mtime, ctime), checked at most once
 * per `reloadInterval`. The file's format and atomic replacement are in accounts-file.ts.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { systemClock, type Now } from "../mail/clock.ts";
import type { Config } from "../config/schema.ts";
import { acquireLock } from "./lock-file.ts";
import { accountsFileSignature, readAccountsFile, removeLeftoverTemps, writeAccountsFile } from "./accounts-file.ts";
import type { AccountsFile } from "./accounts-file.ts";
import { SnapshotAccountStore, type AccountRules, type AccountsSource } from "./snapshot-account-store.ts";

export const ACCOUNTS_FILE = "accounts.json";
export const ACCOUNTS_LOCK = "accounts.lock";

export interface FileAccountStoreOptions extends AccountRules {
  /** Directory of accounts.json and accounts.lock (created when missing). */
  readonly dataDir: string;
  /** Check accounts.json for changes by other processes at most this often (ms). Default 1000; 0 = on every call. */
  readonly reloadInterval?: number;
  /** Give up waiting for the lock after this many ms. Default 10 000. */
  readonly lockTimeout?: number;
  /** Clock (ms since epoch), for createdAt and the reload interval. */
  readonly clock?: Now;
  /** Called when a changed accounts.json cannot be read; the last good snapshot stays in use. */
  readonly onReloadError?: (err: Error) => void;
}

/** accounts.json as an AccountsSource: re-read when its identity changed, replaced atomically under the lock file. */
class AccountsFileSource implements AccountsSource {
  readonly #dataDir: string;
  readonly #file: string;
  readonly #lockFile: string;
  readonly #reloadInterval: number;
  readonly #lockTimeout: number;
  readonly #clock: Now;
  readonly #onReloadError: (err: Error) => void;
  #data: AccountsFile | null = null;
  #signature = "";
  #checkedAt = -Infinity;

  constructor(options: FileAccountStoreOptions, file: string, lockFile: string) {
    this.#dataDir = options.dataDir;
    this.#file = file;
    this.#lockFile = lockFile;
    this.#reloadInterval = options.reloadInterval ?? 1000;
    this.#lockTimeout = options.lockTimeout ?? 10_000;
    this.#clock = options.clock ?? systemClock;
    this.#onReloadError = options.onReloadError ?? (() => undefined);
  }

  /** The file as last read; re-read when it changed (checked at most every reloadInterval). */
  current(): AccountsFile {
    const now = this.#clock.now();
    if (this.#data !== null && now - this.#checkedAt < this.#reloadInterval) return this.#data;
    this.#checkedAt = now;
    let seen = "";
    try {
      seen = accountsFileSignature(this.#file);
      if (this.#data !== null && seen === this.#signature) return this.#data;
      const { data, signature } = readAccountsFile(this.#file);
      this.#data = data;
      this.#signature = signature;
    } catch (err) {
      if (this.#data === null) throw err;
      // Keep serving the last good snapshot; report this version of the file once.
      this.#signature = seen;
      this.#onReloadError(err as Error);
    }
    return this.#data;
  }

  /** Lock, re-read, change, write atomically. */
  async update(change: (data: AccountsFile) => void): Promise<AccountsFile> {
    await mkdir(this.#dataDir, { recursive: true });
    const release = await acquireLock(this.#lockFile, { timeout: this.#lockTimeout });
    try {
      const { data } = readAccountsFile(this.#file);
      change(data);
      removeLeftoverTemps(this.#file);
      await writeAccountsFile(this.#file, data);
      this.#data = data;
      this.#signature = accountsFileSignature(this.#file);
      this.#checkedAt = this.#clock.now();
      return data;
    } finally {
      await release();
    }
  }
}

export class FileAccountStore extends SnapshotAccountStore {
  readonly file: string;
  readonly lockFile: string;

  constructor(options: FileAccountStoreOptions) {
    const file = join(options.dataDir, ACCOUNTS_FILE);
    const lockFile = join(options.dataDir, ACCOUNTS_LOCK);
    super(new AccountsFileSource(options, file, lockFile), options);
    this.file = file;
    this.lockFile = lockFile;
  }

  /**
   * The store for a loaded configuration — `<dataDir>/accounts.json` plus the
   * config's domains, users, sub-address separator and postmaster — the one
   * way the server, the queue tools and the account commands open it.
   */
  static fromConfig(config: Pick<Config, "dataDir" | "domains" | "users" | "delivery" | "postmaster">, options: Partial<FileAccountStoreOptions> = {}): FileAccountStore {
    return new FileAccountStore({
      dataDir: config.dataDir,
      configDomains: config.domains,
      configUsers: config.users,
      subaddressSeparator: config.delivery.subaddressSeparator,
      postmaster: config.postmaster,
      ...options,
    });
  }
}
