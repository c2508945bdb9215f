import { hashPassword, verifyPassword, parseScramVerifier } from "./password.ts";
import type { SaslCredentials } from "../server/sasl/mechanism.ts";

/**
 * Users from the `users:` list of the config file — the bootstrap account
 * store until the accounts database exists. Holds only password hashes and
 * SCRAM verifiers; it never sees or keeps a plaintext password beyond the
 * verification call.
 */

export interface ConfigUser {
  readonly address: string;
  readonly password: string;
  readonly scram?: string;
  readonly addresses?: readonly string[];
}

export interface Accounts extends SaslCredentials {
  /** May this authenticated user send as `address` (MAIL FROM)? */
  mayUseSender(user: string, address: string): boolean;
}

/** Addresses compare case-insensitively (domains always; local parts in practice, as Postfix does). */
function key(address: string): string {
  return address.toLowerCase();
}

export class ConfigAccounts implements Accounts {
  private readonly users = new Map<string, ConfigUser>();
  /** A real hash to verify against for unknown users, so timing does not reveal who exists. */
  private decoy: Promise<string> | null = null;

  constructor(users: readonly ConfigUser[]) {
    for (const u of users) this.users.set(key(u.address), u);
  }

  async verifyPlain(authcid: string, password: string): Promise<string | null> {
    const user = this.users.get(key(authcid));
    if (!user) {
      this.decoy ??= hashPassword("decoy password that matches nothing");
      await verifyPassword(password, await this.decoy);
      return null;
    }
    return (await verifyPassword(password, user.password)) ? user.address : null;
  }

  async scramVerifier(authcid: string) {
    const user = this.users.get(key(authcid));
    if (!user?.scram) return null;
    const v = parseScramVerifier(user.scram);
    return v ? { user: user.address, ...v } : null;
  }

  mayUseSender(user: string, address: string): boolean {
    const u = this.users.get(key(user));
    if (!u) return false;
    const wanted = key(address);
    return key(u.address) === wanted || (u.addresses ?? []).some((a) => key(a) === wanted);
  }
}
