/**
 * The journal spool: a `Spool` where many sessions' messages share one
 * fdatasync (group commit), so durable acceptance costs a fraction of an
 * fsync per message instead of an fsync, a rename and a directory fsync.
 *
 * Layout under the spool directory:
 *   segments/<n>.seg  append-only journal segments (records: see journal-record.ts)
 *   index/<n>.idx     what a retired segment holds, for a fast start (segment-index.ts)
 *   large/<id>        bodies too large to keep in memory until commit
 *
 * Why this shape:
 * - The body must stream in before the envelope is known, and must not sit
 *   whole in memory. So a small body (≤ inlineLimit, default 256 KiB, and
 *   within a spool-wide budget) is held in memory until commit and written
 *   inside its record; a larger one spills into large/<id> as it arrives.
 * - Commit of a small message = one record [header][envelope][body] handed to
 *   the single committer (segment-log.ts), which writes every record pending
 *   at that moment with one writev and makes them durable with ONE fdatasync,
 *   then resolves all of those commits. Nothing waits on a timer: an idle
 *   committer starts at once; a busy one collects the next batch meanwhile.
 * - Commit of a large message = fsync large/<id> (its own fsync: for a big
 *   body that cost is small beside the transfer), wait for the shared fsync
 *   of large/ (started when the file was created), then a record that only
 *   references the file, group-committed like the others. A crash before
 *   that record is durable leaves an orphan file that recovery deletes.
 * - So commit() resolves only when envelope and body are on stable storage,
 *   exactly as FileSpool promises; a record whose batch failed is rejected
 *   and cut off (see segment-log.ts), and recovery checks every byte
 *   (journal-recovery.ts), so nothing partial is ever listed.
 *
 * Removal appends a tombstone. For an inline message it is not synced by
 * itself (it rides along with the next synced batch): a tombstone lost in a
 * crash only brings the message back for one more delivery attempt, which the
 * queue treats as any redelivery. For a large message the tombstone is synced
 * before large/<id> is unlinked, so no live record ever points at a missing file.
 * A segment is deleted when none of its messages is live, it is not the
 * active one, and every older segment it holds tombstones (or seals) for is
 * already gone (deleting it earlier would lose those tombstones). There is no
 * compaction yet: one long-lived message keeps its segment (and the segments
 * holding tombstones for it) on disk.
 *
 * A million queued messages must neither fill the memory nor be read before
 * the server listens (docs/architecture.md, the backlog):
 * - open() prepares a new segment to append to and returns; recovery of the
 *   segments found (journal-recovery.ts) runs in the background. New mail is
 *   accepted, stored and read back meanwhile; only what asks for an older
 *   message (readEnvelope, readBody, remove, list, scan) waits for it.
 * - Recovery reads each retired segment's index file, a few dozen bytes a
 *   record, instead of the segment; only a segment without one (the one being
 *   appended to when the process stopped) is read whole. The index is written
 *   when a segment is retired, from the records appended to it.
 * - In memory (journal-index.ts): the envelope JSON of messages in the
 *   segment being appended to (the queue reads a new message at once), and
 *   for older ones only where each record starts, ~21 bytes a message. Their
 *   envelope is read from the record when asked for.
 */
import { systemClock, type Now } from "../mail/clock.ts";
import { join } from "node:path";
import { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import { checkedBodyStream } from "./checked-body.ts";
import type { Envelope } from "../mail/envelope.ts";
import { GroupSync } from "./group-sync.ts";
import { JournalIndex, type IndexEntry } from "./journal-index.ts";
import { addDependency, recoverJournal } from "./journal-recovery.ts";
import {
  decodeHeader, HEADER_SIZE, messageRecord, nodeJournalFs, parseEnvelope, RecordType, segmentName, segmentNumber, tombstoneRecord,
  type JournalFileHandle, type JournalFs, type RecordHeader,
} from "./journal-record.ts";
import { JournalSpoolWriter, type CommitBody, type JournalWriterHost } from "./journal-writer.ts";
import { isQueueId, newQueueId } from "./queue-id.ts";
import { SegmentLog } from "./segment-log.ts";
import { indexName, writeSegmentIndex, type SegmentRecord } from "./segment-index.ts";
import { SpoolError, toSpoolError, type QueueId, type Spool, type SpoolWriter } from "./spool.ts";
import { ByteBudget, trackUntilSettled } from "./writer-lifecycle.ts";

export interface JournalSpoolOptions {
  /** fsync/fdatasync at all (default true). false is only for benchmarks: it gives up durability. */
  readonly fsync?: boolean;
  readonly onWarning?: (message: string) => void;
  /** Filesystem operations (default node:fs/promises); tests inject failures here. */
  readonly fs?: JournalFs;
  readonly clock?: Now;
  readonly random?: (size: number) => Buffer;
  /** Largest body written inline in the journal (default 256 KiB). */
  readonly inlineLimit?: number;
  /** Inline body bytes all writers together may hold in memory (default 32 MiB); beyond it bodies spill to files. */
  readonly inlineBudget?: number;
  /** Roll to a new segment past this size (default 16 MiB). */
  readonly segmentSize?: number;
}

export interface JournalSpoolStats {
  /** Commits that resolved. */
  readonly commits: number;
  /** Journal fdatasyncs (each covers a whole batch of commits). */
  readonly journalSyncs: number;
  /** Batches written to the journal. */
  readonly batches: number;
  /** fsyncs of large body files. */
  readonly fileSyncs: number;
  /** Directory fsyncs (segments/ and large/). */
  readonly dirSyncs: number;
  /** Segment files on disk. */
  readonly segments: number;
}

const DIR_MODE = 0o700;
/** Read with a record's header, so most envelopes come in the same read. */
const HEAD_READ = 4096;

export class JournalSpool implements Spool {
  readonly dir: string;
  private readonly segmentsDir: string;
  private readonly indexDir: string;
  private readonly largeDir: string;
  private readonly fsync: boolean;
  private readonly fs: JournalFs;
  private readonly warn: (message: string) => void;
  private readonly clock: Now;
  private readonly random: ((size: number) => Buffer) | undefined;
  private readonly inlineLimit: number;
  private readonly inlineBudget: ByteBudget;
  private readonly segmentSize: number;
  private state: "new" | "opening" | "open" | "closed" = "new";
  private openPromise: Promise<void> | null = null;
  private index = new JournalIndex();
  /** Segment files that exist (until their unlink is durable), with their live message counts. */
  private live = new Map<number, number>();
  private dependsOn = new Map<number, Set<number>>();
  private retired = new Set<number>();
  private deleting = new Set<number>();
  /** Records appended to each segment not yet retired, in order: its index file once it is. */
  private appended = new Map<number, SegmentRecord[]>();
  private recovery: Promise<void> | null = null;
  private isRecovered = false;
  private cleanupChain: Promise<void> = Promise.resolve();
  private log: SegmentLog | null = null;
  private segmentsDirHandle: JournalFileHandle | null = null;
  private largeDirHandle: JournalFileHandle | null = null;
  private readonly segmentsDirSync: GroupSync;
  private readonly largeDirSync: GroupSync;
  private readonly writers = new Set<JournalSpoolWriter>();
  private readonly commits = new Set<Promise<void>>();
  private counters = { commits: 0, fileSyncs: 0 };
  private readonly host: JournalWriterHost;

  constructor(dir: string, options: JournalSpoolOptions = {}) {
    this.dir = dir;
    this.segmentsDir = join(dir, "segments");
    this.indexDir = join(dir, "index");
    this.largeDir = join(dir, "large");
    this.fsync = options.fsync ?? true;
    this.fs = options.fs ?? nodeJournalFs;
    this.warn = options.onWarning ?? (() => {});
    this.clock = options.clock ?? systemClock;
    this.random = options.random;
    this.inlineLimit = options.inlineLimit ?? 256 * 1024;
    this.inlineBudget = new ByteBudget(options.inlineBudget ?? 32 * 1024 * 1024);
    this.segmentSize = options.segmentSize ?? 16 * 1024 * 1024;
    const dirSync = (handle: () => JournalFileHandle | null) => async () => {
      const h = handle();
      if (h === null) throw new SpoolError("spool is not open", { code: "ECLOSED" });
      await h.sync();
    };
    this.segmentsDirSync = new GroupSync(dirSync(() => this.segmentsDirHandle));
    this.largeDirSync = new GroupSync(dirSync(() => this.largeDirHandle));
    this.host = this.makeHost();
  }

  get stats(): JournalSpoolStats {
    return {
      commits: this.counters.commits,
      journalSyncs: this.log?.syncs ?? 0,
      batches: this.log?.batches ?? 0,
      fileSyncs: this.counters.fileSyncs,
      dirSyncs: this.segmentsDirSync.syncs + this.largeDirSync.syncs,
      segments: this.live.size,
    };
  }

  /** Ready to accept as soon as a new segment exists; the older segments are recovered in the background (`recovered`). */
  open(): Promise<void> {
    if (this.openPromise === null) {
      this.state = "opening";
      this.openPromise = this.doOpen().then(
        () => {
          this.state = "open";
        },
        async (err: unknown) => {
          await this.releaseHandles();
          this.state = "new";
          this.openPromise = null;
          throw toSpoolError(`cannot open spool ${this.dir}`, err);
        },
      );
    }
    return this.openPromise;
  }

  /**
   * Resolves once every segment found at open() is recovered: torn tails cut,
   * orphan bodies and dead segments deleted. Rejects (as every read of an
   * older message then does) when recovery failed.
   */
  get recovered(): Promise<void> {
    if (this.recovery === null) return Promise.reject(new SpoolError("spool is not open", { code: "ECLOSED" }));
    return this.recovery;
  }

  private async doOpen(): Promise<void> {
    const fs = this.fs;
    for (const d of [this.dir, this.segmentsDir, this.indexDir, this.largeDir]) await fs.mkdir(d, { recursive: true, mode: DIR_MODE });
    if (this.fsync) {
      const top = await fs.open(this.dir, "r");
      try {
        await top.sync();
      } finally {
        await top.close();
      }
      this.segmentsDirHandle = await fs.open(this.segmentsDir, "r");
      this.largeDirHandle = await fs.open(this.largeDir, "r");
    }
    const found = (await fs.readdir(this.segmentsDir)).map(segmentNumber).filter((n): n is number => n !== null).sort((a, b) => a - b);
    for (const n of found) {
      this.live.set(n, 0);
      this.retired.add(n);
    }
    const log = new SegmentLog({
      dir: this.segmentsDir,
      fs,
      firstSegment: (found.at(-1) ?? 0) + 1,
      syncEnabled: this.fsync,
      segmentSize: this.segmentSize,
      dirSync: this.segmentsDirSync,
      onRetired: (n, validEnd) => this.onRetired(n, validEnd),
      onSealWritten: (inSegment, sealed, end) => {
        addDependency(this.dependsOn, inSegment, sealed);
        this.appendedTo(inSegment).push({ type: RecordType.seal, id: "", offset: end, sealed });
      },
    });
    this.log = log;
    await log.start();
    this.live.set(log.activeSegment, this.live.get(log.activeSegment) ?? 0);
    this.recovery = recoverJournal(found, { index: this.index, live: this.live, dependsOn: this.dependsOn }, {
      segmentsDir: this.segmentsDir, indexDir: this.indexDir, largeDir: this.largeDir, fs, syncEnabled: this.fsync, warn: this.warn,
      inUse: (id) => [...this.writers].some((w) => w.id === id),
      stopped: () => this.state === "closed",
    }).then(
      () => {
        this.isRecovered = true;
        this.scheduleSegmentCleanup();
        return this.cleanupChain;
      },
      (err: unknown) => {
        const e = toSpoolError(`cannot recover spool ${this.dir}`, err);
        this.warn(`spool journal: ${e.message}; older messages cannot be read until a restart`);
        throw e;
      },
    );
    this.recovery.catch(() => {});
  }

  private appendedTo(segment: number): SegmentRecord[] {
    let list = this.appended.get(segment);
    if (list === undefined) this.appended.set(segment, (list = []));
    return list;
  }

  /** A segment is retired: its messages settle into a table, and its index file is written. */
  private onRetired(n: number, validEnd: number): void {
    if (!this.live.has(n)) this.live.set(n, 0);
    this.retired.add(n);
    this.index.settle(n);
    const records = this.appended.get(n) ?? [];
    this.appended.delete(n);
    // Ordered with segment deletion, so an index never outlives its segment.
    this.cleanupChain = this.cleanupChain
      .then(() => (this.live.has(n) ? writeSegmentIndex(this.fs, this.indexDir, n, validEnd, records) : undefined))
      .catch((err: unknown) => this.warn(`spool journal: cannot write the index of segment ${n}: ${String(err)} (it is read whole at the next start)`));
    this.scheduleSegmentCleanup();
  }

  private async releaseHandles(): Promise<void> {
    await this.log?.close();
    this.log = null;
    await this.segmentsDirSync.idle();
    await this.largeDirSync.idle();
    for (const h of [this.segmentsDirHandle, this.largeDirHandle]) await h?.close().catch(() => {});
    this.segmentsDirHandle = null;
    this.largeDirHandle = null;
  }

  private assertOpen(): void {
    if (this.state !== "open") {
      throw new SpoolError(this.state === "closed" ? "spool is closed" : "spool is not open", { code: "ECLOSED" });
    }
  }

  private checkId(id: QueueId): void {
    if (!isQueueId(id)) throw new SpoolError(`not a queue id: ${JSON.stringify(id)}`, { code: "EINVAL" });
  }

  /** Wait for recovery unless `id` is a message of this run (which recovery does not touch). */
  private async ready(id: QueueId | null): Promise<void> {
    if (this.isRecovered || (id !== null && this.index.getRecent(id) !== undefined)) return;
    await this.recovered;
  }

  private entry(id: QueueId): IndexEntry {
    const e = this.index.get(id);
    if (e === undefined || e.removing) throw new SpoolError(`no such message: ${id}`, { code: "ENOENT" });
    return e;
  }

  async create(): Promise<SpoolWriter> {
    this.assertOpen();
    let id = newQueueId(this.clock.now(), this.random);
    // ids are unique within a process; a restart in the same millisecond draws new random bits
    while (this.index.getRecent(id) !== undefined) id = newQueueId(this.clock.now(), this.random);
    const writer = new JournalSpoolWriter(this.host, id);
    this.writers.add(writer);
    return writer;
  }

  async list(): Promise<QueueId[]> {
    this.assertOpen();
    await this.ready(null);
    const ids: QueueId[] = [];
    for (const e of this.index.entries()) ids.push(e.id);
    return ids.sort();
  }

  async *scan(batchSize = 1000): AsyncGenerator<QueueId[]> {
    this.assertOpen();
    await this.ready(null);
    let batch: QueueId[] = [];
    for (const e of this.index.entries()) {
      batch.push(e.id);
      if (batch.length >= batchSize) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  async readEnvelope(id: QueueId): Promise<Envelope> {
    this.checkId(id);
    await this.ready(id);
    const e = this.entry(id);
    if (e.kind === "recent") return parseEnvelope(e.envelopeJson) as Envelope;
    const fh = await this.fs.open(join(this.segmentsDir, segmentName(e.segment)), "r");
    try {
      return parseEnvelope((await this.readRecordHead(fh, e)).envelopeJson) as Envelope;
    } catch (err) {
      throw toSpoolError(`cannot read envelope of ${id}`, err);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /** The header and envelope of a record in a retired segment, checked. */
  private async readRecordHead(fh: JournalFileHandle, e: IndexEntry): Promise<{ header: RecordHeader; envelopeJson: Buffer }> {
    let buf = Buffer.allocUnsafe(HEAD_READ);
    let { bytesRead } = await fh.read(buf, 0, HEAD_READ, e.offset);
    const header = decodeHeader(buf.subarray(0, bytesRead));
    if (header === null || header.id !== e.id || (header.type !== RecordType.inline && header.type !== RecordType.large)) {
      throw new SpoolError(`corrupt journal record of ${e.id} in segment ${e.segment}`, { code: "ECORRUPT" });
    }
    const need = HEADER_SIZE + header.envelopeLength;
    if (bytesRead < need) {
      const more = Buffer.allocUnsafe(need);
      buf.copy(more, 0, 0, bytesRead);
      while (bytesRead < need) {
        const r = await fh.read(more, bytesRead, need - bytesRead, e.offset + bytesRead);
        if (r.bytesRead === 0) break;
        bytesRead += r.bytesRead;
      }
      buf = more;
    }
    const envelopeJson = buf.subarray(HEADER_SIZE, need);
    if (bytesRead < need || crc32(envelopeJson) !== header.envelopeCrc) {
      throw new SpoolError(`corrupt journal record of ${e.id} in segment ${e.segment}`, { code: "ECORRUPT" });
    }
    return { header, envelopeJson };
  }

  /**
   * The body as a byte stream. An invalid id throws at once; an unknown id,
   * I/O errors, and a body whose checksum does not match arrive as an 'error'
   * event (the mismatch only after the last byte).
   */
  readBody(id: QueueId): Readable {
    this.checkId(id);
    const fs = this.fs;
    return checkedBodyStream(id, async () => {
      await this.ready(id);
      const e = this.entry(id);
      if (e.kind === "recent") {
        const path = e.large ? join(this.largeDir, id) : join(this.segmentsDir, segmentName(e.segment));
        return { handle: await fs.open(path, "r"), body: { offset: e.bodyOffset, length: e.bodyLength, crc: e.bodyCrc } };
      }
      const seg = await fs.open(join(this.segmentsDir, segmentName(e.segment)), "r");
      try {
        const { header } = await this.readRecordHead(seg, e);
        const body = { length: header.extent, crc: header.bodyCrc };
        if (header.type === RecordType.inline) return { handle: seg, body: { ...body, offset: e.offset + HEADER_SIZE + header.envelopeLength } };
        await seg.close();
        return { handle: await fs.open(join(this.largeDir, id), "r"), body: { ...body, offset: 0 } };
      } catch (err) {
        await seg.close().catch(() => {});
        throw err;
      }
    }, toSpoolError);
  }

  async remove(id: QueueId): Promise<void> {
    this.checkId(id);
    this.assertOpen();
    await this.ready(id);
    const e = this.entry(id);
    const log = this.log;
    if (log === null) throw new SpoolError("spool is not open", { code: "ECLOSED" });
    this.index.setRemoving(e, true);
    try {
      // Synced only when a file is unlinked after it (see the top of this file).
      await log.append([tombstoneRecord(id)], HEADER_SIZE, e.large, (pos) => {
        this.index.remove(e);
        this.live.set(e.segment, (this.live.get(e.segment) ?? 1) - 1);
        addDependency(this.dependsOn, pos.segment, e.segment);
        this.appendedTo(pos.segment).push({ type: RecordType.tombstone, id, offset: pos.offset, sealed: 0 });
      });
    } catch (err) {
      this.index.setRemoving(e, false);
      throw toSpoolError(`cannot remove ${id}`, err);
    }
    if (e.large) {
      await this.fs.unlink(join(this.largeDir, id)).catch((err: unknown) => {
        this.warn(`spool journal: cannot delete large/${id}: ${String(err)} (removed at next start)`);
      });
    }
    if (this.live.get(e.segment) === 0 && this.retired.has(e.segment)) this.scheduleSegmentCleanup();
  }

  /** Delete segments nothing needs any more (see the top of this file); serialized, and only once recovery knows every live message. */
  private scheduleSegmentCleanup(): void {
    if (!this.isRecovered) return;
    this.cleanupChain = this.cleanupChain
      .then(() => this.deleteDeadSegments())
      .catch((err: unknown) => this.warn(`spool journal: cannot delete a segment: ${String(err)}`));
  }

  private async deleteDeadSegments(): Promise<void> {
    for (;;) {
      const dead: number[] = [];
      for (const [n, count] of this.live) {
        if (count !== 0 || !this.retired.has(n) || this.deleting.has(n)) continue;
        const deps = this.dependsOn.get(n);
        if (deps !== undefined && [...deps].some((d) => this.live.has(d))) continue;
        dead.push(n);
      }
      if (dead.length === 0) return;
      for (const n of dead) {
        this.deleting.add(n);
        await this.fs.unlink(join(this.segmentsDir, segmentName(n)));
        await this.fs.unlink(join(this.indexDir, indexName(n))).catch(() => {});
      }
      // Durable before any segment that holds tombstones for these may go.
      if (this.fsync) await this.segmentsDirSync.request();
      for (const n of dead) {
        this.live.delete(n);
        this.dependsOn.delete(n);
        this.retired.delete(n);
        this.deleting.delete(n);
      }
    }
  }

  async close(): Promise<void> {
    if (this.state === "closed") return;
    if (this.openPromise !== null) await this.openPromise.catch(() => {});
    this.state = "closed";
    await this.recovery?.catch(() => {});
    await Promise.allSettled([...this.commits]);
    await Promise.allSettled([...this.writers].map((w) => w.abort()));
    await this.log?.idle();
    await this.cleanupChain;
    await this.releaseHandles();
  }

  private makeHost(): JournalWriterHost {
    return {
      fs: this.fs,
      syncEnabled: this.fsync,
      largeDir: this.largeDir,
      inlineLimit: this.inlineLimit,
      reserveInline: (n) => this.inlineBudget.reserve(n),
      releaseInline: (n) => this.inlineBudget.release(n),
      largeDirSync: () => (this.fsync ? this.largeDirSync.request() : Promise.resolve()),
      commitRecord: (id, json, body) => this.commitRecord(id, json, body),
      trackCommit: (p) => trackUntilSettled(this.commits, p),
      writerDone: (writer, committed) => {
        this.writers.delete(writer);
        if (committed) this.counters.commits++;
      },
      countFileSync: () => {
        this.counters.fileSyncs++;
      },
    };
  }

  private async commitRecord(id: QueueId, envelopeJson: Buffer, body: CommitBody): Promise<void> {
    const log = this.log;
    if (log === null) throw new SpoolError("spool is closed", { code: "ECLOSED" });
    const buffers = messageRecord(id, envelopeJson, body);
    let length = 0;
    for (const b of buffers) length += b.length;
    await log.append(buffers, length, true, (pos) => {
      const large = body.inline === null;
      const bodyOffset = large ? 0 : pos.offset + HEADER_SIZE + envelopeJson.length;
      this.index.addRecent({
        kind: "recent", id, segment: pos.segment, offset: pos.offset, bodyOffset, bodyLength: body.length, bodyCrc: body.crc,
        large, envelopeJson, removing: false,
      });
      this.live.set(pos.segment, (this.live.get(pos.segment) ?? 0) + 1);
      this.appendedTo(pos.segment).push({ type: large ? RecordType.large : RecordType.inline, id, offset: pos.offset, sealed: 0 });
    });
  }
}
