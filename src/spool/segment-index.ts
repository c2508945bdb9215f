/**
 * The index file of a journal segment, `index/<n>.idx`: what recovery
 * would find by reading the segment, in a fraction of the bytes. It is
 * written once, when the segment is retired (no record is ever appended to it
 * again), so reading a million messages' worth of journal at start-up means
 * reading a few megabytes of index instead of every body.
 *
 * Why it may be trusted without fsync: it only repeats records that were
 * already durable in the segment when it was written (message records and
 * seals are fdatasync'd before their commit resolves), plus tombstones, which
 * are never synced on their own — an index that knows a tombstone the
 * segment lost in a power failure only keeps a delivered message removed.
 * A missing, short or damaged index (its CRC does not match) is ignored and
 * the segment is read instead; the records are the truth, the index a copy.
 *
 * Layout, integers big-endian:
 *   header (24 bytes)
 *     0  4  magic "PJX1"
 *     4  4  u32 segment number
 *     8  8  u64 bytes of the segment the index covers (its valid end)
 *     16 4  u32 record count
 *     20 4  zero
 *   records, RECORD_SIZE bytes each, in segment order
 *     0  1  type (journal-record.ts RecordType)
 *     1  3  zero
 *     4  4  u32: for a seal, the sealed segment; else 0
 *     8  8  u64: the record's offset in the segment; for a seal, the sealed segment's valid end
 *     16 18 queue id, ASCII (zeros for a seal)
 *     34 2  zero
 *   trailer: u32 CRC-32 of everything before it
 */
import { crc32 } from "node:zlib";
import { join } from "node:path";
import { RecordType, type JournalFs, type RecordTypeCode } from "./journal-record.ts";
import { queueIdKeyAt } from "./queue-id.ts";
import type { QueueId } from "./spool.ts";

/** One record of a segment, as recovery needs it. */
export interface SegmentRecord {
  readonly type: RecordTypeCode;
  /** "" for a seal. */
  readonly id: QueueId;
  /** Where the record starts in its segment; for a seal, the valid end of the sealed segment. */
  readonly offset: number;
  /** For a seal, the sealed segment; else 0. */
  readonly sealed: number;
}

const MAGIC = 0x504a5831; // "PJX1"
const HEADER = 24;
const RECORD_SIZE = 36;
const ID_LENGTH = 18;
const FILE_MODE = 0o600;

export function indexName(segment: number): string {
  return `${String(segment).padStart(10, "0")}.idx`;
}

/** The segment number of an index file name, or null. */
export function indexNumber(name: string): number | null {
  const m = /^(\d{10})\.idx$/.exec(name);
  return m ? Number(m[1]) : null;
}

export function encodeSegmentIndex(segment: number, validEnd: number, records: readonly SegmentRecord[]): Buffer {
  const buf = Buffer.alloc(HEADER + records.length * RECORD_SIZE + 4);
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt32BE(segment, 4);
  buf.writeBigUInt64BE(BigInt(validEnd), 8);
  buf.writeUInt32BE(records.length, 16);
  let at = HEADER;
  for (const r of records) {
    buf.writeUInt8(r.type, at);
    buf.writeUInt32BE(r.sealed >>> 0, at + 4);
    buf.writeBigUInt64BE(BigInt(r.offset), at + 8);
    if (r.id.length > 0) buf.write(r.id, at + 16, ID_LENGTH, "latin1");
    at += RECORD_SIZE;
  }
  buf.writeUInt32BE(crc32(buf.subarray(0, at)), at);
  return buf;
}

/**
 * An index file's records where they lie in its bytes: what recovery walks
 * through without an object or a string per record (a million messages'
 * worth would be hundreds of megabytes of garbage at start-up).
 */
export class SegmentIndexView {
  readonly validEnd: number;
  readonly count: number;
  private readonly buf: Buffer;

  constructor(buf: Buffer, validEnd: number, count: number) {
    this.buf = buf;
    this.validEnd = validEnd;
    this.count = count;
  }

  type(i: number): RecordTypeCode {
    return this.buf[HEADER + i * RECORD_SIZE] as RecordTypeCode;
  }

  /** For a seal, the sealed segment; else 0. */
  sealed(i: number): number {
    return this.buf.readUInt32BE(HEADER + i * RECORD_SIZE + 4);
  }

  /** Where the record starts in its segment; for a seal, the valid end of the sealed segment. */
  offset(i: number): number {
    const at = HEADER + i * RECORD_SIZE + 8;
    return this.buf.readUInt32BE(at) * 2 ** 32 + this.buf.readUInt32BE(at + 4);
  }

  /** The record's queue id as its key (queue-id.ts), into `out`. */
  key(i: number, out: Float64Array): void {
    queueIdKeyAt(this.buf, HEADER + i * RECORD_SIZE + 16, out);
  }

  id(i: number): QueueId {
    if (this.type(i) === RecordType.seal) return "";
    const at = HEADER + i * RECORD_SIZE + 16;
    return this.buf.toString("latin1", at, at + ID_LENGTH);
  }
}

/** The records of an index file, or null when it is not a whole index of `segment` (every record checked). */
export function viewSegmentIndex(buf: Buffer, segment: number): SegmentIndexView | null {
  if (buf.length < HEADER + 4 || buf.readUInt32BE(0) !== MAGIC || buf.readUInt32BE(4) !== segment) return null;
  const count = buf.readUInt32BE(16);
  const end = HEADER + count * RECORD_SIZE;
  if (buf.length !== end + 4 || buf.readUInt32BE(end) !== crc32(buf.subarray(0, end))) return null;
  const validEnd = Number(buf.readBigUInt64BE(8));
  const view = new SegmentIndexView(buf, validEnd, count);
  const key = new Float64Array(2);
  for (let i = 0; i < count; i++) {
    const type = view.type(i);
    if (type < RecordType.inline || type > RecordType.seal) return null;
    if (!Number.isSafeInteger(view.offset(i))) return null;
    if (type !== RecordType.seal && !queueIdKeyAt(buf, HEADER + i * RECORD_SIZE + 16, key)) return null;
  }
  return view;
}

/** A file's bytes, all of them (index files and segments are bounded in size); fewer when it is shorter than it said. */
export async function readWhole(fh: { stat(): Promise<{ size: number }>; read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> }): Promise<Buffer> {
  const { size } = await fh.stat();
  const buf = Buffer.allocUnsafe(size);
  let got = 0;
  while (got < size) {
    const { bytesRead } = await fh.read(buf, got, size - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** Write `<n>.idx` (whole or not at all: a temporary file renamed into place; no fsync, see above). */
export async function writeSegmentIndex(fs: JournalFs, dir: string, segment: number, validEnd: number, records: readonly SegmentRecord[]): Promise<void> {
  const path = join(dir, indexName(segment));
  const tmp = `${path}.tmp`;
  const fh = await fs.open(tmp, "w", FILE_MODE);
  try {
    const buf = encodeSegmentIndex(segment, validEnd, records);
    let done = 0;
    while (done < buf.length) done += (await fh.writev([buf.subarray(done)], done)).bytesWritten;
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, path);
}

/** The index of `segment`, or null when there is none worth trusting. */
export async function readSegmentIndex(fs: JournalFs, dir: string, segment: number): Promise<SegmentIndexView | null> {
  let fh;
  try {
    fh = await fs.open(join(dir, indexName(segment)), "r");
  } catch {
    return null;
  }
  try {
    return viewSegmentIndex(await readWhole(fh), segment);
  } catch {
    return null;
  } finally {
    await fh.close().catch(() => {});
  }
}
