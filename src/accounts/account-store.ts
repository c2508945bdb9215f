/**
 * The account store: local domains, users (with hashed passwords) and aliases, and the one
 * question delivery asks of them — "where does mail for this address go?". The server uses the
 * same object for AUTH (it is an `Accounts`), the CLI and the admin API use it to change
 * accounts. `FileAccountStore` is the embedded implementation, `PostgresAccountStore` the
 * cluster's; both share their rules (SnapshotAccountStore).
 *
 * Nothing here ever returns or logs a password, a hash or a SCRAM verifier except through the
 * `SaslCredentials` methods the SASL mechanisms need.
 */
import type { SaslCredentials } from "../sasl/exchange.ts";

/** What the SMTP server needs of accounts: SASL verification and sender ownership. */
export interface Accounts extends SaslCredentials {
  /** May this authenticated user send as `address` (MAIL FROM)? */
  mayUseSender(user: string, address: string): boolean;
}

/** A user as written in the config file's `users:` list (bootstrap accounts). */
export interface ConfigUser {
  readonly address: string;
  readonly password: string;
  readonly scram?: string;
  readonly addresses?: readonly string[];
  /** May log in to the admin API. */
  readonly admin?: boolean;
}

/** A user as the store shows it: never carries a password hash or verifier. */
export interface UserRecord {
  /** The canonical address: the login and the mailbox name. */
  readonly address: string;
  /** Mailbox quota in bytes, if one is set (enforced by the local delivery agent, not here). */
  readonly quota?: number;
  /** When the user was added (ms since epoch); absent for users from the config file. */
  readonly createdAt?: number;
  /** "config": from the config file's `users:` (read-only here); "store": added with the CLI/API. */
  readonly source: "config" | "store";
  /** May log in to the admin API. */
  readonly admin: boolean;
}

export interface AliasRecord {
  /** "local@domain", or "@domain" for the catch-all of a domain. */
  readonly source: string;
  readonly targets: readonly string[];
}

/** One place a message for a local recipient ends up. */
export type Target =
  | { readonly type: "mailbox"; readonly address: string /* canonical user address */ }
  | { readonly type: "forward"; readonly address: string /* an address outside our domains */ };

export type RecipientResolution =
  /** The domain is not ours: relay rules apply. */
  | { readonly kind: "not-local" }
  /** Our domain, but nobody by that name (→ 550 5.1.1 at RCPT). `reason` is for logs. */
  | { readonly kind: "unknown"; readonly reason: string }
  /** Deliver to these targets (never empty, de-duplicated). */
  | { readonly kind: "local"; readonly targets: readonly Target[] };

export interface AccountStore extends Accounts {
  isLocalDomain(domain: string): Promise<boolean>;
  /** Where mail for `address` ("local@domain") goes: sub-addressing, aliases, catch-all, postmaster. */
  resolveRecipient(address: string): Promise<RecipientResolution>;
  /** Whether `address` is a mailbox local delivery may write into now (a user, or postmaster@ of a local domain). */
  hasMailbox(address: string): Promise<boolean>;

  listDomains(): Promise<string[]>;
  /** The domains of the config file's `domains:` (read-only here). */
  configDomains(): string[];
  addDomain(domain: string): Promise<void>;
  /** Refuses while the domain has users or aliases, unless `force` (which removes them too). */
  removeDomain(domain: string, opts?: { force?: boolean }): Promise<void>;

  /** Users, sorted by address; only those of `domain` when given. */
  listUsers(domain?: string): Promise<UserRecord[]>;
  getUser(address: string): Promise<UserRecord | null>;
  addUser(address: string, password: string, opts?: { quota?: number; admin?: boolean }): Promise<void>;
  /** Let a user log in to the admin API, or no longer. */
  setAdmin(address: string, admin: boolean): Promise<void>;
  removeUser(address: string): Promise<void>;
  setPassword(address: string, password: string): Promise<void>;

  listAliases(): Promise<AliasRecord[]>;
  /** Add one or more targets to the alias `source` (created when new). Refuses loops. */
  addAlias(source: string, target: string | readonly string[]): Promise<void>;
  /** Remove one target of an alias, or the whole alias when `target` is omitted. */
  removeAlias(source: string, target?: string): Promise<void>;
}

export type AccountErrorCode =
  | "invalid-address" // not local@domain (or @domain where a catch-all is allowed)
  | "invalid-domain" // not a domain name
  | "invalid-password" // empty, or rejected by SASLprep
  | "invalid-quota"
  | "unknown-domain" // a domain that is not local
  | "exists" // already there
  | "not-found" // no such user / alias / domain
  | "config-defined" // from the config file: change it there
  | "domain-in-use" // domain still has users or aliases
  | "alias-loop" // an alias would loop or nest too deep
  | "locked" // another process holds the accounts lock for too long
  | "corrupt"; // the accounts file cannot be read

/**
 * A refusal a person sees, as a value: `message` is the complete sentence (it never contains a
 * password); `code` lets callers (CLI exit codes, HTTP statuses) tell kinds apart.
 */
export class AccountError extends Error {
  override readonly name = "AccountError";
  readonly code: AccountErrorCode;
  constructor(code: AccountErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
