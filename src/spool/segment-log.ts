/**
 * The append side of the journal spool: one committer that owns the active
 * segment and turns many concurrent append requests into one writev and one
 * fdatasync (group commit).
 *
 * - `append()` queues a request. When the committer is idle it starts at once
 *   (after one microtask, so requests made in the same tick share the batch:
 *   no timer, no added latency). While a batch is being written and synced,
 *   new requests wait together and form the next batch. So the number of
 *   fdatasyncs grows with time, not with commits.
 * - A batch is written with one writev at the end of the active segment, then
 *   (if any request in it needs durability) one fdatasync. fdatasync is
 *   enough for appends: on Linux it flushes the metadata needed to read the
 *   data back, and the file size is such metadata (fdatasync(2); ext4, xfs and
 *   btrfs all honour it). Timestamps are not flushed, which is the point.
 * - Only after that sync returns are the requests resolved. A request that
 *   asks for no sync (a tombstone) is resolved once written; it becomes
 *   durable with the next synced batch.
 * - A new segment is created with "wx", fsync'd, and the segments directory
 *   fsync'd before any record goes into it. The next segment is prepared in
 *   the background as soon as one becomes active, to keep that off the hot path.
 * - When a write or sync fails, every request of the batch is rejected, the
 *   segment is truncated back to where the batch started (best effort; after a
 *   failed fsync the page cache is not to be trusted) and retired, and the
 *   next batch goes to a fresh segment whose first record *seals* the failed
 *   one at that offset: recovery drops whatever lies beyond a seal, so a
 *   record whose commit was rejected never comes back even if the truncate
 *   did not happen.
 */
import { join } from "node:path";
import type { GroupSync } from "./group-sync.ts";
import { sealRecord, segmentName, type JournalFileHandle, type JournalFs } from "./journal-record.ts";
import { writeAll } from "./spool-file.ts";
import { SpoolError, toSpoolError } from "./spool.ts";

/** Where an appended record landed. */
export interface RecordPosition {
  readonly segment: number;
  readonly offset: number;
}

interface Request {
  readonly buffers: Buffer[];
  readonly length: number;
  readonly sync: boolean;
  readonly onDone: ((pos: RecordPosition) => void) | undefined;
  resolve(pos: RecordPosition): void;
  reject(err: unknown): void;
}

interface ActiveSegment {
  readonly number: number;
  readonly fh: JournalFileHandle;
  end: number;
}

export interface SegmentLogOptions {
  readonly dir: string;
  readonly fs: JournalFs;
  /** First segment number to use (one past the highest found by recovery). */
  readonly firstSegment: number;
  readonly syncEnabled: boolean;
  /** Roll to a new segment once the active one reaches this size. */
  readonly segmentSize: number;
  /** Shared fsync of the segments directory. */
  readonly dirSync: GroupSync;
  /** A segment is no longer active: no record will be appended to it; its valid records end at `validEnd`. */
  readonly onRetired: (segment: number, validEnd: number) => void;
  /** Segment `inSegment` now holds a seal saying `sealed` ends at `end`: it must outlive it. */
  readonly onSealWritten: (inSegment: number, sealed: number, end: number) => void;
}

const FILE_MODE = 0o600;

export class SegmentLog {
  private readonly options: SegmentLogOptions;
  private pending: Request[] = [];
  private running: Promise<void> | null = null;
  private active: ActiveSegment | null = null;
  private next: { number: number; promise: Promise<JournalFileHandle> } | null = null;
  private nextNumber: number;
  /** Seals not yet written successfully: `segment` holds valid records only below `offset`. */
  private seals: RecordPosition[];
  private closed = false;
  /** Batches written, and fdatasyncs done (for tests and metrics). */
  batches = 0;
  syncs = 0;

  constructor(options: SegmentLogOptions) {
    this.options = options;
    this.nextNumber = options.firstSegment;
    this.seals = [];
  }

  /** The segment records are appended to now (or the next one, when none is active). */
  get activeSegment(): number {
    return this.active?.number ?? this.next?.number ?? this.nextNumber;
  }

  /** Create the first segment, so a failure to do so shows at open(). */
  async start(): Promise<void> {
    await this.ensureActive();
  }

  /**
   * Append one record (`buffers`, `length` bytes in all). Resolves once it is
   * written and, when `sync`, on stable storage. `onDone` runs synchronously
   * at that moment, before anything else can happen to the segment.
   */
  append(buffers: Buffer[], length: number, sync: boolean, onDone?: (pos: RecordPosition) => void): Promise<RecordPosition> {
    if (this.closed) return Promise.reject(new SpoolError("spool is closed", { code: "ECLOSED" }));
    return new Promise<RecordPosition>((resolve, reject) => {
      this.pending.push({ buffers, length, sync, onDone, resolve, reject });
      if (this.running === null) this.running = this.run();
    });
  }

  /** Resolves when nothing is queued or being written. */
  async idle(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  async close(): Promise<void> {
    await this.idle();
    this.closed = true;
    const active = this.active;
    this.active = null;
    await active?.fh.close().catch(() => {});
    // A prepared but unused next segment stays: it is empty, and recovery removes it.
    const next = this.next;
    this.next = null;
    if (next !== null) await next.promise.then((fh) => fh.close(), () => {}).catch(() => {});
  }

  private async run(): Promise<void> {
    await Promise.resolve();
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      await this.writeBatch(batch);
    }
    this.running = null;
  }

  private async writeBatch(batch: Request[]): Promise<void> {
    let seg: ActiveSegment;
    try {
      seg = await this.ensureActive();
    } catch (err) {
      const e = toSpoolError("cannot create journal segment", err);
      for (const r of batch) r.reject(e);
      return;
    }
    const start = seg.end;
    const buffers: Buffer[] = [];
    let offset = start;
    const seals = this.seals;
    for (const s of seals) {
      const rec = sealRecord(s.segment, s.offset);
      buffers.push(rec);
      offset += rec.length;
    }
    const offsets: number[] = [];
    // a seal is worth writing only durably
    let sync = seals.length > 0;
    for (const r of batch) {
      offsets.push(offset);
      offset += r.length;
      for (const b of r.buffers) buffers.push(b);
      if (r.sync) sync = true;
    }
    try {
      await writeAll(seg.fh, buffers, start);
      if (sync && this.options.syncEnabled) {
        await seg.fh.datasync();
        this.syncs++;
      }
    } catch (err) {
      const e = toSpoolError("cannot write to the spool journal", err);
      for (const r of batch) r.reject(e);
      await this.retire(seg, start);
      return;
    }
    this.batches++;
    seg.end = offset;
    if (seals.length > 0) {
      // a batch carrying seals is always synced (above)
      this.seals = this.seals.slice(seals.length);
      for (const s of seals) this.options.onSealWritten(seg.number, s.segment, s.offset);
    }
    batch.forEach((r, i) => {
      const pos = { segment: seg.number, offset: offsets[i] };
      r.onDone?.(pos);
      r.resolve(pos);
    });
    if (seg.end >= this.options.segmentSize) await this.retire(seg, null);
  }

  /**
   * Stop appending to `seg`. After a failed batch (`failedAt` = where it
   * started), cut the file back there and seal it at that offset in the next
   * segment.
   */
  private async retire(seg: ActiveSegment, failedAt: number | null): Promise<void> {
    this.active = null;
    if (failedAt !== null) {
      this.seals.push({ segment: seg.number, offset: failedAt });
      await seg.fh.truncate(failedAt).catch(() => {});
    }
    await seg.fh.close().catch(() => {});
    this.options.onRetired(seg.number, failedAt ?? seg.end);
  }

  private async ensureActive(): Promise<ActiveSegment> {
    if (this.active !== null) return this.active;
    let fh: JournalFileHandle;
    let number: number;
    const prepared = this.next;
    this.next = null;
    if (prepared !== null) {
      try {
        fh = await prepared.promise;
        number = prepared.number;
      } catch {
        // preparing failed (disk full then, perhaps not now): try again directly
        number = this.nextNumber++;
        fh = await this.createSegment(number);
      }
    } else {
      number = this.nextNumber++;
      fh = await this.createSegment(number);
    }
    this.active = { number, fh, end: 0 };
    if (!this.closed) this.prepareNext();
    return this.active;
  }

  private prepareNext(): void {
    const number = this.nextNumber++;
    const promise = this.createSegment(number);
    promise.catch(() => {}); // handled when it is taken
    this.next = { number, promise };
  }

  private async createSegment(number: number): Promise<JournalFileHandle> {
    const fh = await this.options.fs.open(join(this.options.dir, segmentName(number)), "wx", FILE_MODE);
    try {
      if (this.options.syncEnabled) {
        await fh.sync();
        await this.options.dirSync.request();
      }
      return fh;
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  }
}
