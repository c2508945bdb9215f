import type { Clock } from "../mail/clock.ts";

/**
 * Inflow control, Postfix's in_flow_delay: when mail arrives faster than
 * the queue manager hands it to delivery agents, each new message waits — up
 * to `delay` — before its MAIL FROM is answered, so senders are slowed to the
 * rate mail leaves instead of a backlog growing under a load the server
 * accepts. Senders are paced, never refused: after the delay a message goes
 * ahead without a token.
 *
 * Tokens, as in Postfix (qmgr puts one in the mail_flow pipe for each
 * message it takes from the incoming queue, cleanup takes one per message):
 * - the reception takes one per message, at MAIL (`take`);
 * - the queue manager puts one back each time a delivery starts (`put`), and
 *   tops the supply up to `limit` whenever nothing due waits for a delivery
 *   slot (`fill`) — the queue keeps up, so arrivals need not wait.
 * The supply never exceeds `limit`, so a quiet period does not bank an
 * unbounded burst. Waiting costs a session nothing but time: one pending
 * promise and one clock timer, at most one per connection.
 */

/**
 * What a reception asks before it answers MAIL: undefined to go ahead at once, else a promise that
 * resolves when it may. InflowControl in the process that runs the queue; an SMTP worker's stand-in
 * asks the primary's (workers/remote-inflow.ts).
 */
export interface InflowGate {
  take(): Promise<void> | undefined;
}

/**
 * What a worker needs to know to answer for itself: `off` (no pacing), `open` (tokens to spare:
 * go ahead and say so), `paced` (ask for each message).
 */
export type InflowState = "off" | "open" | "paced";

/** Tokens held at most by default (Postfix tops its pipe up to default_process_limit, 100). */
const INFLOW_TOKENS = 100;

interface Waiter {
  readonly resolve: () => void;
  timer: unknown;
  done: boolean;
}

export class InflowControl implements InflowGate {
  private readonly clock: Clock;
  private readonly limit: number;
  private delay: number;
  private tokens: number;
  /** Sessions waiting for a token, oldest first (entries already timed out are skipped). */
  private waiters: Waiter[] = [];
  private head = 0;
  private pending = 0;
  private keepingUp: () => boolean = () => false;
  private announced: InflowState;
  private readonly listeners: ((state: InflowState) => void)[] = [];

  /** `delay` in ms; 0 turns inflow control off. */
  constructor(options: { clock: Clock; delay: number; limit?: number }) {
    this.clock = options.clock;
    this.delay = options.delay;
    this.limit = options.limit ?? INFLOW_TOKENS;
    this.tokens = this.limit;
    this.announced = this.state;
  }

  get state(): InflowState {
    if (this.delay <= 0) return "off";
    return this.tokens > 0 && this.pending === 0 ? "open" : "paced";
  }

  /** Told each time `state` changes (the SMTP workers' stand-ins follow it). */
  onState(listener: (state: InflowState) => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    const now = this.state;
    if (now === this.announced) return;
    this.announced = now;
    for (const l of this.listeners) l(now);
  }

  /** A message went ahead on a worker's word that tokens were to spare: it spends one, if one is left. */
  spend(): void {
    if (this.delay <= 0) return;
    if (this.tokens > 0) this.tokens--;
    this.changed();
  }

  /** The queue manager says whether it keeps up (nothing due waits for a delivery slot). */
  watch(keepingUp: () => boolean): void {
    this.keepingUp = keepingUp;
  }

  /** A reload of `queue.inflowDelay`: applies to messages from now on. */
  setDelay(ms: number): void {
    this.delay = ms;
    if (ms <= 0) this.releaseAll();
    this.changed();
  }

  /** Sessions waiting now (status, tests). */
  get waiting(): number {
    return this.pending;
  }

  /**
   * One token for a new message: undefined when it may go ahead at once, else
   * a promise that resolves when a token comes or the delay has passed.
   */
  take(): Promise<void> | undefined {
    if (this.delay <= 0) return undefined;
    // Tokens spent on messages that were refused or never stored are never given back by a
    // delivery; a queue with nothing waiting for a slot is keeping up, so the supply is topped up
    // now rather than at its next pass, which an idle queue may not make for a long time.
    if (this.tokens === 0 && this.pending === 0 && this.keepingUp()) this.tokens = this.limit;
    if (this.tokens > 0 && this.pending === 0) {
      this.tokens--;
      this.changed();
      return undefined;
    }
    const p = new Promise<void>((resolve) => {
      const w: Waiter = { resolve, timer: null, done: false };
      w.timer = this.clock.schedule(() => {
        this.finish(w);
        this.changed();
      }, this.delay);
      this.waiters.push(w);
      this.pending++;
    });
    this.changed();
    return p;
  }

  /** The queue took `n` messages in for delivery: their tokens go to waiting sessions first. */
  put(n = 1): void {
    this.tokens = Math.min(this.limit, this.tokens + n);
    while (this.tokens > 0 && this.pending > 0) {
      const w = this.next();
      if (w === null) break;
      this.tokens--;
      this.clock.cancel(w.timer);
      this.finish(w);
    }
    this.changed();
  }

  /** The queue keeps up: the supply back to its limit. */
  fill(): void {
    if (this.tokens < this.limit || this.pending > 0) this.put(this.limit);
  }

  /** Let every waiting session go ahead (shutdown, inflow control turned off). */
  releaseAll(): void {
    for (let w = this.next(); w !== null; w = this.next()) {
      this.clock.cancel(w.timer);
      this.finish(w);
    }
    this.changed();
  }

  private next(): Waiter | null {
    while (this.head < this.waiters.length) {
      const w = this.waiters[this.head++];
      if (!w.done) return w;
    }
    return null;
  }

  private finish(w: Waiter): void {
    if (w.done) return;
    w.done = true;
    this.pending--;
    // Keep the list no longer than the sessions waiting (those timed out are dropped now and then).
    if (this.pending === 0) {
      this.waiters = [];
      this.head = 0;
    } else if (this.waiters.length - this.head > 2 * this.pending + 64) {
      this.waiters = this.waiters.slice(this.head).filter((x) => !x.done);
      this.head = 0;
    }
    w.resolve();
  }
}
