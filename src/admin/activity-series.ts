/**
 * Throughput over time, for the dashboard's charts: per minute, how many
 * messages were accepted and refused, and how many recipients were
 * delivered, deferred and bounced, with the queue's size sampled at the end
 * of each minute. In memory, the last 24 hours; a restart starts it empty
 * (the trace and Prometheus keep the long view).
 */
import type { Clock } from "../mail/clock.ts";
import type { PetrelEvent } from "../events/petrel-event.ts";

export interface MinuteCounts {
  /** The minute's start, ms since the epoch. */
  readonly start: number;
  accepted: number;
  rejected: number;
  delivered: number;
  deferred: number;
  bounced: number;
  /** Messages in the queue at the end of the minute; null until sampled. */
  queue: number | null;
}

const MINUTE = 60_000;
const KEEP = 1440;

export class ActivitySeries {
  private readonly clock: Clock;
  private readonly queueSize: () => Promise<number>;
  /** The queue's size as last read (the current minute shows it; reading it is asynchronous). */
  private latestQueue: number | null = null;
  private readonly minutes: MinuteCounts[] = [];
  private timer: unknown = null;

  constructor(options: { clock: Clock; queueSize: () => Promise<number> }) {
    this.clock = options.clock;
    this.queueSize = options.queueSize;
  }

  /** Sample the queue at the end of every minute until `stop`. */
  start(): void {
    const next = () => {
      const now = this.clock.now();
      this.timer = this.clock.schedule(() => {
        const minute = this.current(this.clock.now() - 1);
        void this.sample().then((n) => (minute.queue = n));
        next();
      }, MINUTE - (now % MINUTE) + 1);
    };
    next();
  }

  /** Read the queue's size now; a failed reading keeps the last one. */
  async sample(): Promise<number | null> {
    try {
      this.latestQueue = await this.queueSize();
    } catch {
      // The store may be closing; the chart shows the last size read.
    }
    return this.latestQueue;
  }

  stop(): void {
    if (this.timer !== null) this.clock.cancel(this.timer);
    this.timer = null;
  }

  take(e: PetrelEvent): void {
    switch (e.type) {
      case "accepted":
        if (e.origin === "smtp") this.current(e.at).accepted++;
        break;
      case "rejected":
        this.current(e.at).rejected++;
        break;
      case "delivery":
        this.current(e.at)[e.status]++;
        break;
      case "expired":
        this.current(e.at).bounced++;
        break;
      default:
        break;
    }
  }

  /** The last `count` minutes, oldest first, the current one last; minutes without events are zeros. */
  last(count: number): MinuteCounts[] {
    const now = Math.floor(this.clock.now() / MINUTE) * MINUTE;
    const byStart = new Map(this.minutes.map((m) => [m.start, m]));
    const out: MinuteCounts[] = [];
    for (let i = Math.min(count, KEEP) - 1; i >= 0; i--) {
      const start = now - i * MINUTE;
      const m = byStart.get(start);
      out.push(m ? { ...m, queue: start === now ? this.latestQueue : m.queue } : { start, accepted: 0, rejected: 0, delivered: 0, deferred: 0, bounced: 0, queue: start === now ? this.latestQueue : null });
    }
    return out;
  }

  private current(at: number): MinuteCounts {
    const start = Math.floor(at / MINUTE) * MINUTE;
    const last = this.minutes[this.minutes.length - 1];
    if (last && last.start === start) return last;
    const found = this.minutes.find((m) => m.start === start);
    if (found) return found;
    const m: MinuteCounts = { start, accepted: 0, rejected: 0, delivered: 0, deferred: 0, bounced: 0, queue: null };
    this.minutes.push(m);
    this.minutes.sort((a, b) => a.start - b.start);
    if (this.minutes.length > KEEP) this.minutes.splice(0, this.minutes.length - KEEP);
    return m;
  }
}
