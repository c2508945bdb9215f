/**
 * FileAccountStore: the embedded AccountStore, one JSON file `<dataDir>/accounts.json` merged with
 * the bootstrap accounts of the config file (`domains:` and `users:`, always present, read-only
 * here).
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
 *
 * One class over 400 lines, on purpose: every change goes through the private snapshot and the
 * locked read-change-write (#current, #mutate), which splitting the domain, user and alias
 * operations apart would have to expose; recipient resolution itself is in recipient-resolution.ts.
 */
import { systemClock, type Now } from "../mail/clock.ts";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { normalizeDomain, normalizeMailbox, splitAddress } from "../mail/address.ts";
import type { Config } from "../config/schema.ts";
import type { ConfigUser } from "./account-store.ts";
import { hashPassword, parseScramVerifier, scramVerifier, verifyPassword } from "./password.ts";
import { saslPrep } from "../sasl/saslprep.ts";
import { AccountError } from "./account-store.ts";
import type { AccountStore, AliasRecord, RecipientResolution, UserRecord } from "./account-store.ts";
import { acquireLock } from "./lock-file.ts";
import { accountsFileSignature, readAccountsFile, removeLeftoverTemps, writeAccountsFile } from "./accounts-file.ts";
import type { AccountsFile, StoredUser } from "./accounts-file.ts";
import {
  aliasProblems,
  DEFAULT_SUBADDRESS_SEPARATORS,
  isMailbox,
  ownsAddress,
  resolveRecipient,
  subaddressBase,
} from "./recipient-resolution.ts";
import type { AccountSnapshot } from "./recipient-resolution.ts";

export const ACCOUNTS_FILE = "accounts.json";
export const ACCOUNTS_LOCK = "accounts.lock";
/** PBKDF2 iterations for stored SCRAM verifiers (RFC 7677's minimum; each AUTH costs this much). */
const SCRAM_ITERATIONS = 4096;

export interface FileAccountStoreOptions {
  /** Directory of accounts.json and accounts.lock (created when missing). */
  readonly dataDir: string;
  /** The config file's `domains:` (already normalised by the schema). */
  readonly configDomains?: readonly string[];
  /** The config file's `users:`. */
  readonly configUsers?: readonly ConfigUser[];
  /** Sub-address separator characters, e.g. "+" (default) or "+-"; "" turns sub-addressing off. */
  readonly subaddressSeparator?: string;
  /** The `postmaster` setting: receives postmaster@ and abuse@ of every local domain (see recipient-resolution.ts). */
  readonly postmaster?: string;
  /** Check accounts.json for changes by other processes at most this often (ms). Default 1000; 0 = on every call. */
  readonly reloadInterval?: number;
  /** Give up waiting for the lock after this many ms. Default 10 000. */
  readonly lockTimeout?: number;
  /** Clock (ms since epoch), for createdAt and the reload interval. */
  readonly clock?: Now;
  /** Called when a changed accounts.json cannot be read; the last good snapshot stays in use. */
  readonly onReloadError?: (err: Error) => void;
}

/** A user in the merged view: config or file. */
interface UserEntry {
  readonly address: string;
  readonly password: string;
  readonly scram?: string;
  readonly quota?: number;
  readonly createdAt?: number;
  readonly addresses: readonly string[];
  readonly source: "config" | "store";
  readonly admin: boolean;
}

/** The merged view of config + file that every read answers from. */
interface State {
  readonly snapshot: AccountSnapshot;
  readonly configDomains: ReadonlySet<string>;
  readonly users: ReadonlyMap<string, UserEntry>;
}

const lower = (s: string) => s.toLowerCase();

/** A new or changed address: normalised, local part lower-cased too. */
function parseAddress(input: string, what = "address"): string {
  const m = normalizeMailbox(input.trim());
  if (m === undefined) throw new AccountError("invalid-address", `invalid ${what} '${input}': expected local@domain, such as alice@example.org`);
  return lower(m);
}

function parseDomain(input: string): string {
  const d = normalizeDomain(input);
  if (d === undefined) throw new AccountError("invalid-domain", `invalid domain name '${input}': expected a domain such as example.org`);
  return d;
}

function notLocal(domain: string): AccountError {
  return new AccountError("unknown-domain", `domain ${domain} is not a local domain; add it with: petrel domain add ${domain}`);
}

function checkPassword(password: string): void {
  if (password === "") throw new AccountError("invalid-password", "empty password refused");
  try {
    saslPrep(password);
  } catch {
    throw new AccountError("invalid-password", "the password contains characters that are not allowed (control or unassigned characters)");
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : word.endsWith("s") ? "es" : "s"}`;
}

export class FileAccountStore implements AccountStore {
  readonly file: string;
  readonly lockFile: string;
  readonly #dataDir: string;
  readonly #configDomains: readonly string[];
  readonly #configUsers: readonly ConfigUser[];
  readonly #separators: string;
  readonly #postmaster: string | undefined;
  readonly #reloadInterval: number;
  readonly #lockTimeout: number;
  readonly #clock: Now;
  readonly #onReloadError: (err: Error) => void;
  #state: State | null = null;
  #signature = "";
  #checkedAt = -Infinity;
  #writes: Promise<unknown> = Promise.resolve();
  #decoy: Promise<string> | null = null;

  constructor(options: FileAccountStoreOptions) {
    this.#dataDir = options.dataDir;
    this.file = join(options.dataDir, ACCOUNTS_FILE);
    this.lockFile = join(options.dataDir, ACCOUNTS_LOCK);
    this.#configDomains = options.configDomains ?? [];
    this.#configUsers = options.configUsers ?? [];
    this.#separators = options.subaddressSeparator ?? DEFAULT_SUBADDRESS_SEPARATORS;
    this.#postmaster = options.postmaster;
    this.#reloadInterval = options.reloadInterval ?? 1000;
    this.#lockTimeout = options.lockTimeout ?? 10_000;
    this.#clock = options.clock ?? systemClock;
    this.#onReloadError = options.onReloadError ?? (() => undefined);
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

  // -------------------------------------------------------------------------------------------
  // Reading: an in-memory snapshot, reloaded when accounts.json changes.

  /** The current merged view; re-reads accounts.json when it changed (checked at most every reloadInterval). */
  #current(): State {
    const now = this.#clock.now();
    if (this.#state !== null && now - this.#checkedAt < this.#reloadInterval) return this.#state;
    this.#checkedAt = now;
    let seen = "";
    try {
      seen = accountsFileSignature(this.file);
      if (this.#state !== null && seen === this.#signature) return this.#state;
      const { data, signature } = readAccountsFile(this.file);
      this.#state = this.#build(data);
      this.#signature = signature;
    } catch (err) {
      if (this.#state === null) throw err;
      // Keep serving the last good snapshot; report this version of the file once.
      this.#signature = seen;
      this.#onReloadError(err as Error);
    }
    return this.#state;
  }

  #build(data: AccountsFile): State {
    const domains = new Set<string>();
    const configDomains = new Set<string>();
    for (const d of this.#configDomains) {
      const n = normalizeDomain(d) ?? lower(d);
      domains.add(n);
      configDomains.add(n);
    }
    for (const d of data.domains) domains.add(lower(d));
    const users = new Map<string, UserEntry>();
    for (const u of data.users) {
      users.set(lower(u.address), { ...u, addresses: [], source: "store", admin: u.admin === true });
    }
    for (const u of this.#configUsers) {
      // The config file wins over a stored user with the same address.
      users.set(lower(u.address), { address: u.address, password: u.password, scram: u.scram, addresses: u.addresses ?? [], source: "config", admin: u.admin === true });
    }
    const aliases = new Map<string, readonly string[]>();
    for (const a of data.aliases) aliases.set(lower(a.source), a.targets);
    const userAddresses = new Map<string, string>();
    for (const [k, u] of users) userAddresses.set(k, u.address);
    return { snapshot: { domains, users: userAddresses, aliases }, configDomains, users };
  }

  // -------------------------------------------------------------------------------------------
  // Writing: lock, re-read, change, write atomically.

  /**
   * Run `change` on a fresh copy of the file under the lock, then write the result atomically.
   * Writes from this object are also queued, so they never contend for the lock with each other.
   */
  #mutate(change: (data: AccountsFile, state: State) => void): Promise<void> {
    const run = async () => {
      await mkdir(this.#dataDir, { recursive: true });
      const release = await acquireLock(this.lockFile, { timeout: this.#lockTimeout });
      try {
        const { data } = readAccountsFile(this.file);
        change(data, this.#build(data));
        removeLeftoverTemps(this.file);
        await writeAccountsFile(this.file, data);
        this.#state = this.#build(data);
        this.#signature = accountsFileSignature(this.file);
        this.#checkedAt = this.#clock.now();
      } finally {
        await release();
      }
    };
    const p = this.#writes.then(run, run);
    this.#writes = p.catch(() => undefined);
    return p;
  }

  // -------------------------------------------------------------------------------------------
  // Accounts (AUTH and sender checks)

  async verifyPlain(authcid: string, password: string): Promise<string | null> {
    const user = this.#current().users.get(lower(authcid));
    if (!user) {
      // Spend the same time as for a real user, so timing does not reveal who exists.
      this.#decoy ??= hashPassword("decoy password that matches nothing");
      await verifyPassword(password, await this.#decoy);
      return null;
    }
    return (await verifyPassword(password, user.password)) ? user.address : null;
  }

  async scramVerifier(authcid: string) {
    const user = this.#current().users.get(lower(authcid));
    if (!user?.scram) return null;
    const v = parseScramVerifier(user.scram);
    return v ? { user: user.address, ...v } : null;
  }

  /** See `ownsAddress` in recipient-resolution.ts for what a user may send as. */
  mayUseSender(user: string, address: string): boolean {
    const state = this.#current();
    const u = state.users.get(lower(user));
    if (!u) return false;
    return ownsAddress(state.snapshot, u.address, address, u.addresses, { separators: this.#separators });
  }

  // -------------------------------------------------------------------------------------------
  // Lookups

  async isLocalDomain(domain: string): Promise<boolean> {
    return this.#current().snapshot.domains.has(normalizeDomain(domain) ?? lower(domain));
  }

  async resolveRecipient(address: string): Promise<RecipientResolution> {
    return resolveRecipient(this.#current().snapshot, address, { separators: this.#separators, postmaster: this.#postmaster });
  }

  async hasMailbox(address: string): Promise<boolean> {
    return isMailbox(this.#current().snapshot, address);
  }

  // -------------------------------------------------------------------------------------------
  // Domains

  async listDomains(): Promise<string[]> {
    return [...this.#current().snapshot.domains].sort();
  }

  /** Domains from the config file (read-only here). */
  configDomains(): string[] {
    return [...this.#current().configDomains].sort();
  }

  async addDomain(input: string): Promise<void> {
    const domain = parseDomain(input);
    await this.#mutate((data, state) => {
      if (state.configDomains.has(domain)) throw new AccountError("exists", `domain ${domain} is already a local domain (defined in the config file)`);
      if (state.snapshot.domains.has(domain)) throw new AccountError("exists", `domain ${domain} is already a local domain`);
      data.domains.push(domain);
      data.domains.sort();
    });
  }

  async removeDomain(input: string, opts: { force?: boolean } = {}): Promise<void> {
    const domain = parseDomain(input);
    await this.#mutate((data, state) => {
      if (state.configDomains.has(domain)) {
        throw new AccountError("config-defined", `domain ${domain} is defined in the config file (domains:); remove it there`);
      }
      if (!data.domains.includes(domain)) throw new AccountError("not-found", `domain ${domain} is not a local domain`);
      const inDomain = (address: string) => splitAddress(address).domain === domain;
      const users = data.users.filter((u) => inDomain(u.address));
      const aliases = data.aliases.filter((a) => inDomain(a.source));
      if ((users.length > 0 || aliases.length > 0) && !opts.force) {
        const what = [users.length > 0 ? plural(users.length, "user") : "", aliases.length > 0 ? plural(aliases.length, "alias") : ""]
          .filter(Boolean)
          .join(" and ");
        throw new AccountError("domain-in-use", `domain ${domain} still has ${what}; remove them first, or force the removal (which removes them too)`);
      }
      data.domains = data.domains.filter((d) => d !== domain);
      data.users = data.users.filter((u) => !inDomain(u.address));
      // Drop the domain's aliases, and targets in the domain (they would otherwise become forwards).
      data.aliases = data.aliases
        .filter((a) => !inDomain(a.source))
        .map((a) => ({ source: a.source, targets: a.targets.filter((t) => !inDomain(t)) }))
        .filter((a) => a.targets.length > 0);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Users

  #record(u: UserEntry): UserRecord {
    return {
      address: u.address,
      ...(u.quota !== undefined ? { quota: u.quota } : {}),
      ...(u.createdAt !== undefined ? { createdAt: u.createdAt } : {}),
      source: u.source,
      admin: u.admin,
    };
  }

  async listUsers(domainInput?: string): Promise<UserRecord[]> {
    const state = this.#current();
    let users = [...state.users.values()];
    if (domainInput !== undefined) {
      const domain = parseDomain(domainInput);
      if (!state.snapshot.domains.has(domain)) throw notLocal(domain);
      users = users.filter((u) => splitAddress(u.address).domain === domain);
    }
    return users.map((u) => this.#record(u)).sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }

  async getUser(address: string): Promise<UserRecord | null> {
    const u = this.#current().users.get(lower(address.trim()));
    return u ? this.#record(u) : null;
  }

  async addUser(input: string, password: string, opts: { quota?: number; admin?: boolean } = {}): Promise<void> {
    const address = parseAddress(input);
    const { domain } = splitAddress(address);
    if (opts.quota !== undefined && (!Number.isSafeInteger(opts.quota) || opts.quota < 0)) {
      throw new AccountError("invalid-quota", "the quota must be a whole number of bytes");
    }
    checkPassword(password);
    // Fail fast before the (slow) hashing; the checks are repeated under the lock.
    this.#checkNewUser(this.#current(), address, domain);
    const hash = await hashPassword(password);
    const scram = scramVerifier(password, SCRAM_ITERATIONS);
    await this.#mutate((data, state) => {
      this.#checkNewUser(state, address, domain);
      const user: StoredUser = { address, password: hash, scram, createdAt: this.#clock.now() };
      if (opts.quota !== undefined) user.quota = opts.quota;
      if (opts.admin) user.admin = true;
      data.users.push(user);
      data.users.sort((a, b) => (a.address < b.address ? -1 : 1));
    });
  }

  #checkNewUser(state: State, address: string, domain: string): void {
    if (!state.snapshot.domains.has(domain)) throw notLocal(domain);
    const existing = state.users.get(address);
    if (existing?.source === "config") throw new AccountError("exists", `user ${address} already exists (defined in the config file)`);
    if (existing) throw new AccountError("exists", `user ${address} already exists`);
  }

  /** The stored user `address`, or an error naming why it cannot be changed. */
  #changeable(state: State, address: string): void {
    const u = state.users.get(address);
    if (!u) throw new AccountError("not-found", `no such user: ${address}`);
    if (u.source === "config") throw new AccountError("config-defined", `user ${address} is defined in the config file (users:); change it there`);
  }

  async removeUser(input: string): Promise<void> {
    const address = parseAddress(input);
    await this.#mutate((data, state) => {
      this.#changeable(state, address);
      data.users = data.users.filter((u) => lower(u.address) !== address);
    });
  }

  async setAdmin(input: string, admin: boolean): Promise<void> {
    const address = parseAddress(input);
    await this.#mutate((data, state) => {
      this.#changeable(state, address);
      const u = data.users.find((x) => lower(x.address) === address)!;
      if (admin) u.admin = true;
      else delete u.admin;
    });
  }

  async setPassword(input: string, password: string): Promise<void> {
    const address = parseAddress(input);
    checkPassword(password);
    this.#changeable(this.#current(), address);
    const hash = await hashPassword(password);
    const scram = scramVerifier(password, SCRAM_ITERATIONS);
    await this.#mutate((data, state) => {
      this.#changeable(state, address);
      const u = data.users.find((x) => lower(x.address) === address)!;
      u.password = hash;
      u.scram = scram;
    });
  }

  // -------------------------------------------------------------------------------------------
  // Aliases

  async listAliases(): Promise<AliasRecord[]> {
    const out: AliasRecord[] = [];
    for (const [source, targets] of this.#current().snapshot.aliases) out.push({ source, targets: [...targets] });
    return out.sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
  }

  /** "a@d" or "@d" (catch-all), lower-cased. */
  #parseSource(input: string): string {
    const s = input.trim();
    if (s.startsWith("@")) {
      const d = normalizeDomain(s.slice(1));
      if (d === undefined) throw new AccountError("invalid-address", `invalid alias '${input}': expected local@domain, or @domain for a catch-all`);
      return `@${d}`;
    }
    return parseAddress(s, "alias");
  }

  async addAlias(sourceInput: string, targetInput: string | readonly string[]): Promise<void> {
    const source = this.#parseSource(sourceInput);
    const inputs = typeof targetInput === "string" ? [targetInput] : targetInput;
    if (inputs.length === 0) throw new AccountError("invalid-address", "an alias needs at least one target");
    await this.#mutate((data, state) => {
      const snap = state.snapshot;
      const sourceDomain = splitAddress(source).domain;
      if (!snap.domains.has(sourceDomain)) throw notLocal(sourceDomain);
      const targets: string[] = [];
      for (const t of inputs) {
        const m = normalizeMailbox(t.trim());
        if (m === undefined) throw new AccountError("invalid-address", `invalid alias target '${t}': expected local@domain, such as bob@example.org`);
        const { local, domain } = splitAddress(m);
        // Local targets are stored lower-cased; a forward keeps its local part as written.
        const target = snap.domains.has(domain) ? lower(m) : `${local}@${domain}`;
        if (snap.domains.has(domain)) {
          const l = lower(local);
          const base = subaddressBase(l, this.#separators);
          const known = (k: string) => snap.users.has(`${k}@${domain}`) || snap.aliases.has(`${k}@${domain}`) || k === "postmaster";
          if (target === source && !snap.users.has(source)) {
            throw new AccountError("alias-loop", `alias loop: ${source} → ${source}`);
          }
          if (!known(l) && !(base !== undefined && known(base))) {
            throw new AccountError("not-found", `alias target ${target} is neither a user nor an alias; add the user first (petrel user add ${target})`);
          }
        }
        const existing = data.aliases.find((a) => lower(a.source) === source);
        if ((existing?.targets ?? []).some((x) => lower(x) === lower(target)) || targets.some((x) => lower(x) === lower(target))) {
          throw new AccountError("exists", `alias ${source} → ${target} already exists`);
        }
        targets.push(target);
      }
      const before = new Set(aliasProblems(snap, { separators: this.#separators }).map((p) => p.text));
      const existing = data.aliases.find((a) => lower(a.source) === source);
      if (existing) existing.targets.push(...targets);
      else {
        data.aliases.push({ source, targets });
        data.aliases.sort((a, b) => (a.source < b.source ? -1 : 1));
      }
      const after = aliasProblems(this.#build(data).snapshot, { separators: this.#separators }).filter((p) => !before.has(p.text));
      if (after.length > 0) throw new AccountError("alias-loop", after[0].text);
    });
  }

  async removeAlias(sourceInput: string, targetInput?: string): Promise<void> {
    const source = this.#parseSource(sourceInput);
    await this.#mutate((data) => {
      const i = data.aliases.findIndex((a) => lower(a.source) === source);
      if (i < 0) throw new AccountError("not-found", `no such alias: ${source}`);
      if (targetInput === undefined) {
        data.aliases.splice(i, 1);
        return;
      }
      const alias = data.aliases[i];
      const want = lower(targetInput.trim());
      const j = alias.targets.findIndex((t) => lower(t) === want);
      if (j < 0) throw new AccountError("not-found", `alias ${source} has no target ${targetInput.trim()}`);
      alias.targets.splice(j, 1);
      if (alias.targets.length === 0) data.aliases.splice(i, 1);
    });
  }
}

