/**
 * Crash recovery for the journal spool: rebuild the index of live messages
 * from the segment files, cut torn tails, and delete orphan large bodies.
 *
 * Segments are read in order, every record checked byte for byte (header,
 * envelope and inline body CRCs). The first record that is not whole ends
 * the segment: everything from there on was never acknowledged (a commit
 * resolves only after its batch, and every batch before it, was fdatasync'd),
 * so the file is truncated there. Message records enter the index,
 * tombstones take them out again, and a seal (written after a failed batch)
 * takes out every record of the sealed segment at or beyond its offset.
 * A large/ file that no live record references is a body whose commit never
 * completed (or whose removal was interrupted): it is deleted.
 */
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { decodeHeader, HEADER_SIZE, RecordType, recordSize, segmentName, segmentNumber, type JournalFs } from "./journal-record.ts";
import { isQueueId } from "./queue-id.ts";
import type { QueueId } from "./spool.ts";

/** Where a live message is. */
export interface IndexEntry {
  readonly id: QueueId;
  readonly segment: number;
  /** Offset of the record in its segment. */
  readonly offset: number;
  /** Offset of the body: in the segment (inline) or 0 in large/<id>. */
  readonly bodyOffset: number;
  readonly bodyLength: number;
  readonly bodyCrc: number;
  readonly large: boolean;
  readonly envelopeJson: Buffer;
  /** A remove() is appending its tombstone. */
  removing: boolean;
}

export interface RecoveredJournal {
  readonly index: Map<QueueId, IndexEntry>;
  /** Segment numbers found, ascending. */
  readonly segments: number[];
  /** Segment -> the older segments it holds tombstones or seals for (it must outlive them). */
  readonly dependsOn: Map<number, Set<number>>;
}

export function addDependency(dependsOn: Map<number, Set<number>>, segment: number, on: number): void {
  if (segment === on) return;
  let set = dependsOn.get(segment);
  if (set === undefined) dependsOn.set(segment, (set = new Set()));
  set.add(on);
}

export async function recoverJournal(
  segmentsDir: string,
  largeDir: string,
  fs: JournalFs,
  syncEnabled: boolean,
  warn: (message: string) => void,
): Promise<RecoveredJournal> {
  const index = new Map<QueueId, IndexEntry>();
  const dependsOn = new Map<number, Set<number>>();
  const segments = (await fs.readdir(segmentsDir))
    .map(segmentNumber)
    .filter((n): n is number => n !== null)
    .sort((a, b) => a - b);
  const seals: Array<{ segment: number; end: number }> = [];

  for (const n of segments) {
    const path = join(segmentsDir, segmentName(n));
    const fh = await fs.open(path, "r+");
    try {
      const { size } = await fh.stat();
      // A segment is bounded (segment size + one batch), so it is read whole.
      const buf = Buffer.allocUnsafe(size);
      let got = 0;
      while (got < size) {
        const { bytesRead } = await fh.read(buf, got, size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const data = buf.subarray(0, got);
      let off = 0;
      while (off < data.length) {
        const h = decodeHeader(data.subarray(off, off + HEADER_SIZE));
        if (h === null) break;
        const end = off + recordSize(h);
        if (end > data.length) break;
        if (h.type === RecordType.seal) {
          seals.push({ segment: h.sealed, end: h.extent });
          addDependency(dependsOn, n, h.sealed);
          for (const [id, e] of index) if (e.segment === h.sealed && e.offset >= h.extent) index.delete(id);
        } else if (!isQueueId(h.id)) {
          break;
        } else if (h.type === RecordType.tombstone) {
          const e = index.get(h.id);
          if (e !== undefined) {
            index.delete(h.id);
            addDependency(dependsOn, n, e.segment);
          }
        } else {
          const envStart = off + HEADER_SIZE;
          const envelopeJson = data.subarray(envStart, envStart + h.envelopeLength);
          if (crc32(envelopeJson) !== h.envelopeCrc) break;
          const bodyOffset = envStart + h.envelopeLength;
          const large = h.type === RecordType.large;
          if (!large && crc32(data.subarray(bodyOffset, end)) !== h.bodyCrc) break;
          index.set(h.id, {
            id: h.id, segment: n, offset: off, bodyOffset: large ? 0 : bodyOffset, bodyLength: h.extent,
            bodyCrc: h.bodyCrc, large, envelopeJson: Buffer.from(envelopeJson), removing: false,
          });
        }
        off = end;
      }
      if (off < data.length) {
        await fh.truncate(off);
        if (syncEnabled) await fh.sync();
        warn(`spool journal: segment ${n}: cut ${data.length - off} byte(s) of unacknowledged partial records at offset ${off}`);
      }
    } finally {
      await fh.close();
    }
  }
  // Seals name segments cut back after a failed write; make sure the cut holds.
  for (const s of seals) {
    if (!segments.includes(s.segment)) continue;
    const fh = await fs.open(join(segmentsDir, segmentName(s.segment)), "r+");
    try {
      if ((await fh.stat()).size > s.end) {
        await fh.truncate(s.end);
        if (syncEnabled) await fh.sync();
      }
    } finally {
      await fh.close();
    }
  }

  // Large bodies: each live large record needs its file; any other file is an orphan.
  const largeFiles = new Set(await fs.readdir(largeDir));
  for (const [id, e] of index) {
    if (e.large && !largeFiles.has(id)) {
      warn(`spool journal: message ${id} has lost its body file large/${id}; dropped`);
      index.delete(id);
    }
  }
  let orphans = 0;
  for (const name of largeFiles) {
    const e = isQueueId(name) ? index.get(name) : undefined;
    if (e === undefined || !e.large) {
      await fs.unlink(join(largeDir, name));
      orphans++;
    }
  }
  if (orphans > 0) warn(`spool journal: removed ${orphans} partial message(s) left from before a restart`);
  return { index, segments, dependsOn };
}
