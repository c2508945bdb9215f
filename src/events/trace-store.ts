/**
 * The message trace and the activity feed: every event about a message,
 * kept by queue id, and the recent accepted / rejected / delivered /
 * deferred / bounced events, newest first. In memory for the recent ones
 * (bounded in messages and events), on disk for `retention`
 * (trace-segments.ts), so a trace survives a restart. `take` is what the
 * event bus calls on the SMTP and delivery paths: it only appends to memory
 * and arms a timer; the disk is written in batches, off those paths.
 */
import type { Clock } from "../mail/clock.ts";
import { ACTIVITY_TYPES, TRACE_TYPES, type PetrelEvent, type PetrelEventType } from "./petrel-event.ts";
import { TraceSegments } from "./trace-segments.ts";

export interface TraceStoreOptions {
  /** `<dataDir>/trace`. */
  readonly dir: string;
  /** How long a trace is kept (ms). */
  readonly retention: number;
  /** The segments on disk together stay below this (bytes). */
  readonly maxBytes: number;
  readonly clock: Clock;
  /** Messages whose trace is kept in memory (the most recently active). */
  readonly memoryMessages?: number;
  /** Events of one message kept in memory (the disk has them all). */
  readonly eventsPerMessage?: number;
  /** Events the activity feed keeps in memory. */
  readonly feedSize?: number;
  /** Lines are written at most this long after their event (ms). */
  readonly flushDelay?: number;
  /** A batch that could not be written (the trace loses it; mail is not affected). */
  readonly onError?: (err: unknown) => void;
}

export interface ActivityQuery {
  /** Only events older than this one (paging: the `seq` of the last event of the previous page). */
  readonly before?: number;
  /** Only events newer than this one. */
  readonly after?: number;
  readonly limit?: number;
  readonly types?: readonly PetrelEventType[];
  /** Only events whose queue id, addresses, client or reply contain this text (case-insensitive). */
  readonly text?: string;
}

const FLUSH_BYTES = 256 * 1024;

export class TraceStore {
  readonly segments: TraceSegments;
  private readonly options: TraceStoreOptions;
  private readonly messages = new Map<string, PetrelEvent[]>();
  private readonly feed: PetrelEvent[] = [];
  private pending: PetrelEvent[] = [];
  private pendingBytes = 0;
  private timer: unknown = null;
  private writing: Promise<void> = Promise.resolve();
  private lastSeq = 0;
  private closed = false;

  constructor(options: TraceStoreOptions) {
    this.options = options;
    this.segments = new TraceSegments({ dir: options.dir, retention: options.retention, maxBytes: options.maxBytes });
  }

  private get memoryMessages(): number {
    return this.options.memoryMessages ?? 10_000;
  }

  private get feedSize(): number {
    return this.options.feedSize ?? 2000;
  }

  /** Read what the disk holds of the recent past; resolves with the last event number used. */
  async open(): Promise<number> {
    await this.segments.open(this.options.clock.now());
    for (const e of await this.segments.tail(32 * 1024 * 1024)) this.remember(e);
    return this.lastSeq;
  }

  /** An event from the bus. Never blocks: memory now, disk within `flushDelay`. */
  take(e: PetrelEvent): void {
    if (this.closed || !(TRACE_TYPES.has(e.type) || ACTIVITY_TYPES.has(e.type))) return;
    this.remember(e);
    this.pending.push(e);
    this.pendingBytes += 200;
    if (this.pendingBytes >= FLUSH_BYTES) void this.flush();
    else if (this.timer === null) this.timer = this.options.clock.schedule(() => void this.flush(), this.options.flushDelay ?? 1000);
  }

  /** Write what is pending now (close, tests). */
  flush(): Promise<void> {
    if (this.timer !== null) this.options.clock.cancel(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (batch.length === 0) return this.writing;
    this.writing = this.writing.then(() => this.write(batch));
    return this.writing;
  }

  private async write(batch: readonly PetrelEvent[]): Promise<void> {
    // Consecutive events of one hour go into its segment in one write.
    let i = 0;
    try {
      while (i < batch.length) {
        const hour = Math.floor(batch[i].at / 3_600_000);
        let text = "";
        for (; i < batch.length && Math.floor(batch[i].at / 3_600_000) === hour; i++) text += JSON.stringify(batch[i]) + "\n";
        await this.segments.append(batch[i - 1].at, text);
      }
    } catch (err) {
      this.options.onError?.(err);
    }
  }

  private remember(e: PetrelEvent): void {
    if (e.seq > this.lastSeq) this.lastSeq = e.seq;
    const id = "queueId" in e ? e.queueId : undefined;
    if (id !== undefined && TRACE_TYPES.has(e.type)) {
      let list = this.messages.get(id);
      if (list) this.messages.delete(id); // re-inserted: the most recently active last
      else list = [];
      list.push(e);
      const max = this.options.eventsPerMessage ?? 500;
      if (list.length > max) list.splice(1, list.length - max); // the first event (accepted) stays
      this.messages.set(id, list);
      if (this.messages.size > this.memoryMessages) this.messages.delete(this.messages.keys().next().value!);
    }
    if (ACTIVITY_TYPES.has(e.type)) {
      this.feed.push(e);
      if (this.feed.length > this.feedSize * 2) this.feed.splice(0, this.feed.length - this.feedSize);
    }
  }

  /**
   * Every event about `queueId`, oldest first: from memory when it holds the
   * message from its beginning, else from the segments since the message
   * arrived (`since`, from the queue id).
   */
  async trace(queueId: string, since: number): Promise<PetrelEvent[]> {
    const known = this.messages.get(queueId);
    if (known && (known[0].type === "accepted" || known[0].type === "rejected") && known.length < (this.options.eventsPerMessage ?? 500)) return [...known];
    await this.flush();
    const needle = `"queueId":${JSON.stringify(queueId)}`;
    const found = await this.segments.scan(since, (line) => line.includes(needle), (e) => "queueId" in e && e.queueId === queueId && TRACE_TYPES.has(e.type));
    return found.sort((a, b) => a.seq - b.seq);
  }

  /** The activity feed, newest first. */
  activity(q: ActivityQuery = {}): PetrelEvent[] {
    const limit = Math.max(1, Math.min(q.limit ?? 50, 500));
    const types = q.types && q.types.length > 0 ? new Set(q.types) : null;
    const text = q.text?.toLowerCase();
    const out: PetrelEvent[] = [];
    const start = Math.max(0, this.feed.length - this.feedSize);
    for (let i = this.feed.length - 1; i >= start && out.length < limit; i--) {
      const e = this.feed[i];
      if (q.before !== undefined && e.seq >= q.before) continue;
      if (q.after !== undefined && e.seq <= q.after) break;
      if (types && !types.has(e.type)) continue;
      if (text && !JSON.stringify(e).toLowerCase().includes(text)) continue;
      out.push(e);
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    await this.segments.close();
  }
}
