/**
 * Random bearer secrets that stand for something for a while: administrators'
 * logins, one-message HTML links. Kept in memory (a restart ends them all),
 * by the hash of the token (a memory dump does not hand them out), bounded
 * in number (the oldest goes first).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Now } from "../mail/clock.ts";

interface Entry<T> {
  readonly value: T;
  readonly expiresAt: number;
}

function hashKey(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

export class ExpiringTokens<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly lifetime: number;
  private readonly clock: Now;
  private readonly max: number;

  constructor(options: { lifetime: number; clock: Now; max: number }) {
    this.lifetime = options.lifetime;
    this.clock = options.clock;
    this.max = options.max;
  }

  /** A new token (32 random bytes, base64url) standing for `value` until `expiresAt`. */
  issue(value: T): { token: string; expiresAt: number } {
    const now = this.clock.now();
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k);
    while (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    const token = randomBytes(32).toString("base64url");
    const expiresAt = now + this.lifetime;
    this.entries.set(hashKey(token), { value, expiresAt });
    return { token, expiresAt };
  }

  /** What `token` stands for, while it is valid. */
  find(token: string): T | null {
    const key = hashKey(token);
    const e = this.entries.get(key);
    if (!e) return null;
    if (e.expiresAt <= this.clock.now()) {
      this.entries.delete(key);
      return null;
    }
    return e.value;
  }

  revoke(token: string): void {
    this.entries.delete(hashKey(token));
  }

  /** Every token whose value `matches` ends. */
  revokeWhere(matches: (value: T) => boolean): void {
    for (const [k, e] of this.entries) if (matches(e.value)) this.entries.delete(k);
  }
}
