/**
 * Idle sessions kept for the next delivery to the same place, as Postfix's
 * smtp_reuse.c and scache(8) do: a session is cached under a key the caller
 * builds from everything it was opened with (destination address and port,
 * TLS policy, certificate name, AUTH identity), so it is only ever reused
 * under the same settings.
 *
 * - A session is kept at most `idleMs` after its last transaction, then QUIT.
 * - Before reuse it must still be usable and answer RSET with 250. A session
 *   the server ended while it was idle (a 421 or a close, RFC 5321 §3.8) or
 *   that refuses the RSET is dropped quietly: the caller opens a fresh one,
 *   and no message is the worse for it.
 * - A session that has reached the server's RFC 9422 MAILMAX is not kept.
 *
 * Time is injected (`timer`), so the idle limit is tested without waiting.
 */
import type { SmtpConnection } from "./smtp-connection.ts";

/** Schedules the idle timeout; the queue's Clock fits. */
export interface CacheTimer {
  schedule(fn: () => void, ms: number): unknown;
  cancel(handle: unknown): void;
}

export interface ConnectionCacheOptions {
  /** How long an idle session is kept (ms); 0 = never reuse. */
  readonly idleMs: number;
  /** Idle sessions kept per key; more are ended. Default 20 (Postfix's default destination concurrency). */
  readonly maxIdlePerKey?: number;
  readonly timer?: CacheTimer;
}

const systemTimer: CacheTimer = {
  schedule(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  cancel(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

interface Idle {
  readonly session: SmtpConnection;
  readonly timer: unknown;
}

export class ConnectionCache {
  readonly #idleMs: number;
  readonly #maxIdle: number;
  readonly #timer: CacheTimer;
  readonly #idle = new Map<string, Idle[]>();
  #closed = false;

  constructor(options: ConnectionCacheOptions) {
    this.#idleMs = options.idleMs;
    this.#maxIdle = options.maxIdlePerKey ?? 20;
    this.#timer = options.timer ?? systemTimer;
  }

  /** Idle sessions held now, for `key` or in all. */
  size(key?: string): number {
    if (key !== undefined) return this.#idle.get(key)?.length ?? 0;
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /**
   * The most recently used idle session for `key` that answered RSET, or
   * undefined. Sessions that went bad while idle are closed on the way.
   */
  async take(key: string): Promise<SmtpConnection | undefined> {
    const list = this.#idle.get(key);
    while (list && list.length > 0) {
      const { session, timer } = list.pop()!;
      if (list.length === 0) this.#idle.delete(key);
      this.#timer.cancel(timer);
      if (!session.usable) {
        session.close();
        continue;
      }
      try {
        // A 421 read here is the server's goodbye, not a verdict on any message (RFC 5321 §3.8).
        await session.rset();
        return session;
      } catch {
        session.close();
      }
    }
    return undefined;
  }

  /**
   * Keep `session` for the next delivery to `key`, or end it (QUIT) when it
   * cannot be reused: reuse off, the cache closed, the session unusable, the
   * server's MAILMAX reached, or enough idle sessions for `key` already.
   */
  async release(key: string, session: SmtpConnection): Promise<void> {
    const mailMax = session.capabilities.limits.mailMax;
    const list = this.#idle.get(key) ?? [];
    if (this.#idleMs <= 0 || this.#closed || !session.usable || (mailMax !== undefined && session.transactions >= mailMax) || list.length >= this.#maxIdle) {
      await session.quit();
      return;
    }
    const entry: Idle = {
      session,
      timer: this.#timer.schedule(() => {
        const l = this.#idle.get(key);
        const i = l?.indexOf(entry) ?? -1;
        if (l && i >= 0) {
          l.splice(i, 1);
          if (l.length === 0) this.#idle.delete(key);
        }
        void session.quit();
      }, this.#idleMs),
    };
    list.push(entry);
    this.#idle.set(key, list);
  }

  /** QUIT every idle session; later releases end their session at once. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#idle.values()].flat();
    this.#idle.clear();
    await Promise.all(all.map((e) => {
      this.#timer.cancel(e.timer);
      return e.session.quit();
    }));
  }
}
