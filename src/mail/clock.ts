/**
 * Time, injected wherever Petrel reads it, so retry logic, caches and
 * expiries are tested without sleeping: tests drive a manual clock,
 * production uses the system one. Milliseconds since the epoch throughout.
 */
export interface Clock {
  now(): number;
  /** Call `fn` after `ms`; the handle is only for cancel(). Must not keep the process alive. */
  schedule(fn: () => void, ms: number): unknown;
  cancel(handle: unknown): void;
}

/** What a component that only reads the time needs of a clock. */
export type Now = Pick<Clock, "now">;

export const systemClock: Clock = {
  now: () => Date.now(),
  schedule(fn, ms) {
    const t = setTimeout(fn, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    t.unref();
    return t;
  },
  cancel(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** A clock that moves only when told to (tests). */
export class ManualClock implements Clock {
  private t: number;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  schedule(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }

  cancel(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Move time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }
}
