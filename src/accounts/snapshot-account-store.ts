/**
 * SnapshotAccountStore: the account rules every AccountStore shares — parsing and normalising
 * addresses, the checks behind each refusal (AccountError codes), the bootstrap accounts of the
 * config file (`domains:` and `users:`, always present, read-only, winning over stored ones), and
 * lookups answered from an in-memory snapshot without I/O (the SMTP path asks some of them
 * synchronously: `mayUseSender`). Where the stored part lives is an `AccountsSource`: a JSON file
 * (file-account-store.ts) or PostgreSQL (storage/postgres/account-store.ts). Every change runs as
 * "read the stored data under the source's exclusive lock, change it, store it", so the checks are
 * made against the data as it is at that instant, whoever else writes.
 *
 * One class over 400 lines, on purpose: every change goes through the private snapshot and the
 * locked read-change-write (#current, #mutate), which splitting the domain, user and alias
 * operations apart would have to expose; recipient resolution itself is in recipient-resolution.ts.
 */
import { systemClock, type Now } from "../mail/clock.ts";
import { normalizeDomain, normalizeMailbox, splitAddress } from "../mail/address.ts";
import type { ConfigUser } from "./account-store.ts";
import { hashPassword, parseScramVerifier, scramVerifier, verifyPassword } from "./password.ts";
import { saslPrep } from "../sasl/saslprep.ts";
import { AccountError } from "./account-store.ts";
import type { AccountStore, AliasRecord, RecipientResolution, UserRecord } from "./account-store.ts";
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

/** PBKDF2 iterations for stored SCRAM verifiers (RFC 7677's minimum; each AUTH costs this much). */
const SCRAM_ITERATIONS = 4096;

/**
 * Where the stored accounts (those not from the config file) live. The data is the accounts
 * file's shape (accounts-file.ts) whatever the medium.
 */
export interface AccountsSource {
  /**
   * The stored data as this process knows it now, synchronously. The same object until it
   * changes (the store rebuilds its snapshot only then). Throws when nothing could be read yet.
   */
  current(): AccountsFile;
  /**
   * Under an exclusive lock held across every process that writes: read the stored data afresh,
   * let `change` modify it (or throw, which changes nothing), store the result durably. Resolves
   * to the data stored, which `current()` returns from then on.
   */
  update(change: (data: AccountsFile) => void): Promise<AccountsFile>;
  /**
   * Catch up with changes made elsewhere that this process may not have seen yet; true when the
   * data changed. Asked before a lookup answers "no such user" (a user added on another node a
   * moment ago). Absent: `current()` is always up to date enough.
   */
  catchUp?(): Promise<boolean>;
}

/** What every account store is configured with: the config file's part and the recipient rules. */
export interface AccountRules {
  /** The config file's `domains:` (already normalised by the schema). */
  readonly configDomains?: readonly string[];
  /** The config file's `users:`. */
  readonly configUsers?: readonly ConfigUser[];
  /** Sub-address separator characters, e.g. "+" (default) or "+-"; "" turns sub-addressing off. */
  readonly subaddressSeparator?: string;
  /** The `postmaster` setting: receives postmaster@ and abuse@ of every local domain (see recipient-resolution.ts). */
  readonly postmaster?: string;
  /** Clock (ms since epoch), for createdAt. */
  readonly clock?: Now;
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

export class SnapshotAccountStore implements AccountStore {
  readonly #source: AccountsSource;
  readonly #configDomains: readonly string[];
  readonly #configUsers: readonly ConfigUser[];
  readonly #separators: string;
  readonly #postmaster: string | undefined;
  readonly #clock: Now;
  #state: State | null = null;
  #built: AccountsFile | null = null;
  #writes: Promise<unknown> = Promise.resolve();
  #decoy: Promise<string> | null = null;

  constructor(source: AccountsSource, rules: AccountRules) {
    this.#source = source;
    this.#configDomains = rules.configDomains ?? [];
    this.#configUsers = rules.configUsers ?? [];
    this.#separators = rules.subaddressSeparator ?? DEFAULT_SUBADDRESS_SEPARATORS;
    this.#postmaster = rules.postmaster;
    this.#clock = rules.clock ?? systemClock;
  }

  // -------------------------------------------------------------------------------------------
  // Reading: an in-memory snapshot, rebuilt when the source's data changes.

  /** The current merged view of config + stored data. */
  #current(): State {
    const data = this.#source.current();
    if (this.#state === null || data !== this.#built) {
      this.#state = this.#build(data);
      this.#built = data;
    }
    return this.#state;
  }

  /** Whether catching up with other processes changed anything (a negative answer may then be stale). */
  async #caughtUp(): Promise<boolean> {
    return this.#source.catchUp ? this.#source.catchUp() : false;
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
  // Writing: through the source's locked read-change-store.

  /**
   * Run `change` on a fresh copy of the stored data under the source's lock, then store it.
   * Writes from this object are also queued, so they never contend for the lock with each other.
   */
  #mutate(change: (data: AccountsFile, state: State) => void): Promise<void> {
    const run = async () => {
      const stored = await this.#source.update((data) => change(data, this.#build(data)));
      this.#state = this.#build(stored);
      this.#built = stored;
    };
    const p = this.#writes.then(run, run);
    this.#writes = p.catch(() => undefined);
    return p;
  }

  // -------------------------------------------------------------------------------------------
  // Accounts (AUTH and sender checks)

  async verifyPlain(authcid: string, password: string): Promise<string | null> {
    // A password set on another node a moment ago counts at once (one cheap question to the source).
    await this.#caughtUp();
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
    await this.#caughtUp();
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
    const options = { separators: this.#separators, postmaster: this.#postmaster };
    const r = resolveRecipient(this.#current().snapshot, address, options);
    // "No such user" is asked again once caught up: the user may have been added elsewhere just now.
    if (r.kind !== "unknown" || !(await this.#caughtUp())) return r;
    return resolveRecipient(this.#current().snapshot, address, options);
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

