/**
 * Crash recovery for the journal spool: rebuild the index of live messages
 * from the segments, cut torn tails, and delete orphan large bodies. It runs
 * in the background after open() (journal-spool.ts): new mail goes into a new
 * segment meanwhile, and only what asks for an older message waits for it.
 *
 * Segments are taken in order. A retired segment has an index file
 * (segment-index.ts) that lists its records; one without a trustworthy index
 * — the segment that was being appended to when the process stopped — is read
 * whole and every record checked byte for byte (header, envelope and inline
 * body CRCs). The first record that is not whole ends such a segment:
 * everything from there on was never acknowledged (a commit resolves only
 * after its batch, and every batch before it, was fdatasync'd), so the file
 * is truncated there, and its index is written so the next start reads that
 * instead. Message records enter the index, tombstones take them out again,
 * and a seal (written after a failed batch) takes out every record of the
 * sealed segment at or beyond its offset. A large/ file that no live record
 * references is a body whose commit never completed (or whose removal was
 * interrupted): it is deleted — unless a writer of this process owns it.
 */
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { decodeHeader, HEADER_SIZE, RecordType, recordSize, segmentName, type JournalFs } from "./journal-record.ts";
import { SegmentTable, type JournalIndex } from "./journal-index.ts";
import { encodeSegmentIndex, indexNumber, readSegmentIndex, readWhole, viewSegmentIndex, writeSegmentIndex, type SegmentIndexView, type SegmentRecord } from "./segment-index.ts";
import { isQueueId } from "./queue-id.ts";
import type { QueueId } from "./spool.ts";

export function addDependency(dependsOn: Map<number, Set<number>>, segment: number, on: number): void {
  if (segment === on) return;
  let set = dependsOn.get(segment);
  if (set === undefined) dependsOn.set(segment, (set = new Set()));
  set.add(on);
}

/** What recovery fills in: the index, live messages per segment, and which segment must outlive which. */
export interface RecoveryTarget {
  readonly index: JournalIndex;
  readonly live: Map<number, number>;
  readonly dependsOn: Map<number, Set<number>>;
}

export interface RecoveryOptions {
  readonly segmentsDir: string;
  /** Where the segments' index files are (segment-index.ts). */
  readonly indexDir: string;
  readonly largeDir: string;
  readonly fs: JournalFs;
  readonly syncEnabled: boolean;
  readonly warn: (message: string) => void;
  /** A large/ file that belongs to a message this process is writing (not an orphan). */
  readonly inUse: (id: QueueId) => boolean;
  /** Stop between segments (the spool is closing). */
  readonly stopped: () => boolean;
}

/** Recover `segments` (ascending; every one retired) into `target`. */
export async function recoverJournal(segments: readonly number[], target: RecoveryTarget, o: RecoveryOptions): Promise<void> {
  const seals: Array<{ segment: number; end: number }> = [];
  const present = new Set(segments);
  for (const n of segments) {
    if (o.stopped()) return;
    let view = await trustedIndex(o, n);
    if (view === null) {
      const scanned = await scanSegment(o, n);
      // Retired for good now: the next start reads the index instead.
      await writeSegmentIndex(o.fs, o.indexDir, n, scanned.validEnd, scanned.records).catch(() => {});
      view = viewSegmentIndex(encodeSegmentIndex(n, scanned.validEnd, scanned.records), n)!;
    }
    apply(n, view, target, seals);
  }
  // Seals name segments cut back after a failed write; make sure the cut holds.
  for (const s of seals) {
    if (!present.has(s.segment)) continue;
    const fh = await o.fs.open(join(o.segmentsDir, segmentName(s.segment)), "r+");
    try {
      if ((await fh.stat()).size > s.end) {
        await fh.truncate(s.end);
        if (o.syncEnabled) await fh.sync();
      }
    } finally {
      await fh.close();
    }
  }
  await removeOrphans(target, o);
  // Index files whose segment is gone, and index files never renamed into place.
  for (const name of await o.fs.readdir(o.indexDir)) {
    const n = indexNumber(name);
    if ((n !== null && !present.has(n) && !target.live.has(n)) || name.endsWith(".tmp")) {
      await o.fs.unlink(join(o.indexDir, name)).catch(() => {});
    }
  }
}

/** The records of segment `n` from its index file, when the index is whole and the segment at least as long as it says. */
async function trustedIndex(o: RecoveryOptions, n: number): Promise<SegmentIndexView | null> {
  const idx = await readSegmentIndex(o.fs, o.indexDir, n);
  if (idx === null) return null;
  const fh = await o.fs.open(join(o.segmentsDir, segmentName(n)), "r");
  try {
    return (await fh.stat()).size >= idx.validEnd ? idx : null;
  } finally {
    await fh.close();
  }
}

/**
 * Message records enter the index, tombstones and seals take them out. The
 * records are read where they lie (no object or string per message): a
 * segment's messages go into typed arrays, and a tombstone is matched by key
 * against them once they are a table, else against the older segments.
 */
function apply(n: number, view: SegmentIndexView, target: RecoveryTarget, seals: Array<{ segment: number; end: number }>): void {
  const count = view.count;
  const hi = new Float64Array(count);
  const lo = new Float64Array(count);
  const offsets = new Float64Array(count);
  const large = new Uint8Array(count);
  const tombstones: number[] = [];
  const key = new Float64Array(2);
  let m = 0;
  for (let i = 0; i < count; i++) {
    const type = view.type(i);
    if (type === RecordType.seal) {
      const sealed = view.sealed(i);
      const end = view.offset(i);
      seals.push({ segment: sealed, end });
      addDependency(target.dependsOn, n, sealed);
      const gone = target.index.cut(sealed, end);
      if (gone > 0) target.live.set(sealed, (target.live.get(sealed) ?? gone) - gone);
    } else if (type === RecordType.tombstone) {
      tombstones.push(i);
    } else {
      view.key(i, key);
      hi[m] = key[0];
      lo[m] = key[1];
      offsets[m] = view.offset(i);
      large[m] = type === RecordType.large ? 1 : 0;
      m++;
    }
  }
  const table = SegmentTable.fromKeys(n, hi.subarray(0, m), lo.subarray(0, m), offsets.subarray(0, m), large.subarray(0, m));
  for (const i of tombstones) {
    view.key(i, key);
    const slot = table.find({ hi: key[0], lo: key[1] });
    if (slot >= 0) {
      table.remove(slot);
      continue;
    }
    const e = target.index.get(view.id(i));
    if (e !== undefined) {
      target.index.remove(e);
      target.live.set(e.segment, (target.live.get(e.segment) ?? 1) - 1);
      addDependency(target.dependsOn, n, e.segment);
    }
  }
  target.index.addTable(table);
  target.live.set(n, table.live);
}

/**
 * Read segment `n` whole, checking every record; cut a torn tail. Returns its
 * records and where its valid part ends.
 */
async function scanSegment(o: RecoveryOptions, n: number): Promise<{ records: SegmentRecord[]; validEnd: number }> {
  const records: SegmentRecord[] = [];
  const fh = await o.fs.open(join(o.segmentsDir, segmentName(n)), "r+");
  try {
    // A segment is bounded (segment size + one batch), so it is read whole.
    const data = await readWhole(fh);
    let off = 0;
    while (off < data.length) {
      const h = decodeHeader(data.subarray(off, off + HEADER_SIZE));
      if (h === null) break;
      const end = off + recordSize(h);
      if (end > data.length) break;
      if (h.type === RecordType.seal) {
        records.push({ type: h.type, id: "", offset: h.extent, sealed: h.sealed });
      } else if (!isQueueId(h.id)) {
        break;
      } else if (h.type === RecordType.tombstone) {
        records.push({ type: h.type, id: h.id, offset: off, sealed: 0 });
      } else {
        const envStart = off + HEADER_SIZE;
        if (crc32(data.subarray(envStart, envStart + h.envelopeLength)) !== h.envelopeCrc) break;
        if (h.type === RecordType.inline && crc32(data.subarray(envStart + h.envelopeLength, end)) !== h.bodyCrc) break;
        records.push({ type: h.type, id: h.id, offset: off, sealed: 0 });
      }
      off = end;
    }
    if (off < data.length) {
      await fh.truncate(off);
      if (o.syncEnabled) await fh.sync();
      o.warn(`spool journal: segment ${n}: cut ${data.length - off} byte(s) of unacknowledged partial records at offset ${off}`);
    }
    return { records, validEnd: off };
  } finally {
    await fh.close();
  }
}

/** Large bodies: each live large record needs its file; any other file is an orphan. */
async function removeOrphans(target: RecoveryTarget, o: RecoveryOptions): Promise<void> {
  const index = target.index;
  const largeFiles = new Set(await o.fs.readdir(o.largeDir));
  const lost = [...index.largeSettled()].filter((e) => !e.removing && !largeFiles.has(e.id));
  for (const e of lost) {
    o.warn(`spool journal: message ${e.id} has lost its body file large/${e.id}; dropped`);
    index.remove(e);
    target.live.set(e.segment, (target.live.get(e.segment) ?? 1) - 1);
  }
  let orphans = 0;
  for (const name of largeFiles) {
    const e = isQueueId(name) ? index.get(name) : undefined;
    if ((e === undefined || !e.large) && !(isQueueId(name) && o.inUse(name))) {
      await o.fs.unlink(join(o.largeDir, name));
      orphans++;
    }
  }
  if (orphans > 0) o.warn(`spool journal: removed ${orphans} partial message(s) left from before a restart`);
}

