import type { Now } from "../mail/clock.ts";

/**
 * A bounded cache whose entries expire: least recently used entries are evicted when it is full,
 * and an entry past its expiry time (by the injected clock) is never returned.
 */

export class ExpiringLruCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>();
  private readonly capacity: number;
  private readonly clock: Now;

  constructor(capacity: number, clock: Now) {
    this.capacity = Math.max(0, Math.floor(capacity));
    this.clock = clock;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    return this.getWithTtl(key)?.value;
  }

  /** The value and the milliseconds it has left. */
  getWithTtl(key: string): { value: V; ttlMs: number } | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    const left = entry.expiresAt - this.clock.now();
    if (left <= 0) return undefined;
    this.entries.set(key, entry); // most recently used goes last
    return { value: entry.value, ttlMs: left };
  }

  /** Keep `value` for `ttlMs` milliseconds; a ttl of 0 or less is not stored. */
  set(key: string, value: V, ttlMs: number): void {
    this.entries.delete(key);
    if (ttlMs <= 0 || this.capacity === 0) return;
    this.entries.set(key, { value, expiresAt: this.clock.now() + ttlMs });
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  has(key: string): boolean {
    const entry = this.entries.get(key);
    return entry !== undefined && entry.expiresAt > this.clock.now();
  }

  clear(): void {
    this.entries.clear();
  }
}
