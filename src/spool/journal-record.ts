/**
 * The on-disk record format of the journal spool (see journal-spool.ts), and
 * the slice of the filesystem API it uses (injectable, so tests can make any
 * operation fail).
 *
 * A segment file `segments/<n>.seg` is a sequence of records, each:
 *
 *   header (56 bytes)  |  envelope JSON, UTF-8 (envelopeLength)  |  body (inline records only)
 *
 * header, all integers big-endian:
 *   0  4  magic "PJR1"
 *   4  1  type: 1 inline message, 2 large message (body in large/<id>), 3 tombstone, 4 seal
 *   5  3  zero
 *   8  8  u64: body length (messages); for a seal, the valid end of the sealed segment
 *   16 4  envelope length (messages; else 0)
 *   20 4  CRC-32 of the envelope JSON
 *   24 4  CRC-32 of the body
 *   28 4  u32: for a seal, the number of the sealed segment; else 0
 *   32 18 queue id, ASCII (zeros for a seal)
 *   50 2  zero
 *   52 4  CRC-32 of header bytes 0..52
 *
 * A record is whole when its header checks out, it fits in the file, and the
 * envelope CRC (and, inline, the body CRC) match. Recovery checks every byte:
 * a record whose commit never resolved may be on disk in any partial state.
 */
import { crc32 } from "node:zlib";
import * as fsp from "node:fs/promises";
import type { SpoolFileHandle } from "./spool-file.ts";
import { SpoolError, type QueueId } from "./spool.ts";

export const HEADER_SIZE = 56;
const MAGIC = 0x504a5231; // "PJR1"
const ID_LENGTH = 18;
const MAX_ENVELOPE = 16 * 1024 * 1024;

export const RecordType = { inline: 1, large: 2, tombstone: 3, seal: 4 } as const;
export type RecordTypeCode = (typeof RecordType)[keyof typeof RecordType];

/** A file handle with what the journal needs beyond the file spool's: fdatasync and truncate. */
export interface JournalFileHandle extends SpoolFileHandle {
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
}

/** The file operations the journal spool needs; `node:fs/promises` satisfies it. */
export interface JournalFs {
  open(path: string, flags: string, mode?: number): Promise<JournalFileHandle>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  mkdir(path: string, options: { recursive: true; mode?: number }): Promise<string | undefined>;
}

export const nodeJournalFs: JournalFs = fsp;

export interface RecordHeader {
  readonly type: RecordTypeCode;
  /** Body length (messages) or the offset where the sealed segment ends (seal). */
  readonly extent: number;
  readonly envelopeLength: number;
  readonly envelopeCrc: number;
  readonly bodyCrc: number;
  /** Sealed segment number (seal); 0 otherwise. */
  readonly sealed: number;
  readonly id: QueueId;
}

export function encodeHeader(h: RecordHeader): Buffer {
  const buf = Buffer.alloc(HEADER_SIZE);
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt8(h.type, 4);
  buf.writeBigUInt64BE(BigInt(h.extent), 8);
  buf.writeUInt32BE(h.envelopeLength, 16);
  buf.writeUInt32BE(h.envelopeCrc >>> 0, 20);
  buf.writeUInt32BE(h.bodyCrc >>> 0, 24);
  buf.writeUInt32BE(h.sealed >>> 0, 28);
  if (h.id.length > 0) buf.write(h.id, 32, ID_LENGTH, "latin1");
  buf.writeUInt32BE(crc32(buf.subarray(0, 52)), 52);
  return buf;
}

/** The header at `buf[0..56]`, or null when it is not a whole, valid header. */
export function decodeHeader(buf: Buffer): RecordHeader | null {
  if (buf.length < HEADER_SIZE) return null;
  if (buf.readUInt32BE(0) !== MAGIC) return null;
  if (buf.readUInt32BE(52) !== crc32(buf.subarray(0, 52))) return null;
  const type = buf.readUInt8(4);
  if (type < 1 || type > 4) return null;
  const extent = Number(buf.readBigUInt64BE(8));
  if (!Number.isSafeInteger(extent)) return null;
  const envelopeLength = buf.readUInt32BE(16);
  const id = type === RecordType.seal ? "" : buf.toString("latin1", 32, 32 + ID_LENGTH);
  return {
    type: type as RecordTypeCode,
    extent,
    envelopeLength,
    envelopeCrc: buf.readUInt32BE(20),
    bodyCrc: buf.readUInt32BE(24),
    sealed: buf.readUInt32BE(28),
    id,
  };
}

/** Bytes a record occupies in its segment. */
export function recordSize(h: RecordHeader): number {
  return HEADER_SIZE + h.envelopeLength + (h.type === RecordType.inline ? h.extent : 0);
}

export function encodeEnvelope(envelope: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(envelope), "utf8");
  if (json.length > MAX_ENVELOPE) throw new SpoolError("envelope too large", { code: "EFBIG" });
  return json;
}

/** A message record: header + envelope (+ body buffers when inline). */
export function messageRecord(
  id: QueueId,
  envelopeJson: Buffer,
  body: { inline: Buffer[] | null; length: number; crc: number },
): Buffer[] {
  const header = encodeHeader({
    type: body.inline !== null ? RecordType.inline : RecordType.large,
    extent: body.length,
    envelopeLength: envelopeJson.length,
    envelopeCrc: crc32(envelopeJson),
    bodyCrc: body.crc,
    sealed: 0,
    id,
  });
  return body.inline !== null ? [header, envelopeJson, ...body.inline] : [header, envelopeJson];
}

export function tombstoneRecord(id: QueueId): Buffer {
  return encodeHeader({ type: RecordType.tombstone, extent: 0, envelopeLength: 0, envelopeCrc: 0, bodyCrc: 0, sealed: 0, id });
}

/** "Segment `segment` holds valid records only below byte `end`." */
export function sealRecord(segment: number, end: number): Buffer {
  return encodeHeader({ type: RecordType.seal, extent: end, envelopeLength: 0, envelopeCrc: 0, bodyCrc: 0, sealed: segment, id: "" });
}

export function parseEnvelope(json: Buffer): unknown {
  const value: unknown = JSON.parse(json.toString("utf8"));
  if (typeof value !== "object" || value === null || !Array.isArray((value as { recipients?: unknown }).recipients)) {
    throw new SpoolError("corrupt journal record: envelope has the wrong shape", { code: "ECORRUPT" });
  }
  return value;
}

export function segmentName(n: number): string {
  return `${String(n).padStart(10, "0")}.seg`;
}

/** The segment number of a file name, or null when it is not a segment. */
export function segmentNumber(name: string): number | null {
  const m = /^(\d{10})\.seg$/.exec(name);
  return m ? Number(m[1]) : null;
}
