import type { Now } from "../mail/clock.ts";

/**
 * Event rates per key ("connections from 192.0.2.7", "messages from
 * alice@example.org") — Postfix's anvil, in process.
 *
 * Each key keeps a sliding-window counter: the events of the current
 * window and of the one before, the older count weighted by how much of
 * the previous window still overlaps the last `window` milliseconds. That
 * is two numbers per key, whatever the rate, and unlike anvil's fixed
 * windows it does not let a client send twice its limit across a window
 * boundary. Windows are aligned on multiples of their length since the
 * epoch; each key has its own length.
 *
 * Memory is bounded: at most `maxKeys` keys are kept, least recently
 * counted first out; a key idle for two of its windows says nothing any
 * more and is dropped at the next sweep. Time comes from the injected clock.
 */

export interface RateCountersOptions {
  /** Most keys kept at once. */
  readonly maxKeys: number;
  readonly clock: Now;
}

interface Counter {
  readonly window: number;
  /** Index of the current window (time / window). */
  index: number;
  current: number;
  previous: number;
}

export interface RateCountersStats {
  readonly keys: number;
  /** Keys dropped to stay within maxKeys while they still held counts. */
  readonly evicted: number;
}

/** How often idle keys are looked for, ms. */
const SWEEP_INTERVAL = 60_000;

export class RateCounters {
  private readonly maxKeys: number;
  private readonly clock: Now;
  /** In order of last use: the first entry is the least recently counted. */
  private readonly counters = new Map<string, Counter>();
  private evictedCount = 0;
  private lastSweep = 0;

  constructor(options: RateCountersOptions) {
    this.maxKeys = Math.max(1, Math.floor(options.maxKeys));
    this.clock = options.clock;
  }

  /** Count one event for `key` over windows of `window` ms; the rate over the last window, this event included. */
  hit(key: string, window: number): number {
    if (!(window > 0)) throw new RangeError("a rate window must be longer than 0 ms");
    const now = this.clock.now();
    let c = this.counters.get(key);
    if (c === undefined || c.window !== window) {
      c = { window, index: Math.floor(now / window), current: 0, previous: 0 };
    } else {
      this.counters.delete(key);
      roll(c, now);
    }
    c.current++;
    this.counters.set(key, c); // most recently used goes last
    this.sweep(now);
    return estimate(c, now);
  }

  /** The rate for `key` over the last window, without counting an event. */
  peek(key: string): number {
    const c = this.counters.get(key);
    if (c === undefined) return 0;
    const now = this.clock.now();
    const copy = { ...c };
    roll(copy, now);
    return estimate(copy, now);
  }

  stats(): RateCountersStats {
    return { keys: this.counters.size, evicted: this.evictedCount };
  }

  /**
   * Drop idle keys from the front (least recently used) once in a while,
   * and beyond maxKeys the least recently used ones, a sixteenth of the
   * table at a time: walking a Map from its front skips the entries deleted
   * there before, so doing it on every hit would cost time in proportion to
   * the table.
   */
  private sweep(now: number): void {
    if (now - this.lastSweep >= SWEEP_INTERVAL || now < this.lastSweep) {
      this.lastSweep = now;
      for (const [key, c] of this.counters) {
        if (Math.floor(now / c.window) - c.index < 2) break;
        this.counters.delete(key);
      }
    }
    if (this.counters.size <= this.maxKeys) return;
    let drop = this.counters.size - this.maxKeys + Math.floor(this.maxKeys / 16);
    for (const key of this.counters.keys()) {
      if (drop-- <= 0) break;
      this.counters.delete(key);
      this.evictedCount++;
    }
  }
}

/** Move a counter to the window of `now`: the current count becomes the previous one, or both lapse. */
function roll(c: Counter, now: number): void {
  const index = Math.floor(now / c.window);
  if (index === c.index) return;
  c.previous = index === c.index + 1 ? c.current : 0;
  c.current = 0;
  c.index = index;
}

/** Events in the current window, plus the part of the previous window still inside the last `window` ms. */
function estimate(c: Counter, now: number): number {
  const elapsed = (now - c.index * c.window) / c.window;
  return c.current + c.previous * (1 - elapsed);
}
