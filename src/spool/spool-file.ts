/**
 * The on-disk format of one committed message, and the small slice of the
 * filesystem API the file spool uses (injectable, so tests can make any
 * operation fail).
 *
 * A message file is:
 *
 *   body bytes (bodyLength)  |  envelope JSON, UTF-8 (envelopeLength)  |  footer (32 bytes)
 *
 * footer, all integers big-endian:
 *   0  8  magic "PTRLSPL1"
 *   8  8  bodyLength (u64)
 *   16 4  envelopeLength (u32)
 *   20 4  CRC-32 of the envelope JSON
 *   24 4  CRC-32 of the body (checked when the body is read back)
 *   28 4  CRC-32 of footer bytes 0..28
 *
 * The body streams in first because the envelope is complete only at commit;
 * the footer last because only then are all lengths known. A file is whole
 * when its size is exactly bodyLength + envelopeLength + 32 and every check
 * passes; anything else is not a message.
 */
import { crc32 } from "node:zlib";
import * as fsp from "node:fs/promises";
import type { Envelope } from "../mail/envelope.ts";
import { SpoolError } from "./spool.ts";

export const FOOTER_SIZE = 32;
const MAGIC = Buffer.from("PTRLSPL1", "latin1");
const MAX_ENVELOPE = 0xffffffff;

/** The file operations the file spool needs; `node:fs/promises` satisfies it. */
export interface SpoolFileHandle {
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<{ size: number }>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface SpoolFs {
  open(path: string, flags: string, mode?: number): Promise<SpoolFileHandle>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  /** The directory's entries one by one (a million names are never held at once). */
  opendir(path: string): Promise<AsyncIterable<{ readonly name: string }>>;
  mkdir(path: string, options: { recursive: true; mode?: number }): Promise<string | undefined>;
  rm(path: string, options: { recursive: boolean; force: boolean }): Promise<void>;
}

export const nodeFs: SpoolFs = fsp;

export interface Footer {
  readonly bodyLength: number;
  readonly envelopeLength: number;
  readonly envelopeCrc: number;
  readonly bodyCrc: number;
}

/** The envelope JSON and the footer that follow the body of a message. */
export function encodeTrailer(envelope: Envelope, bodyLength: number, bodyCrc: number): Buffer[] {
  const json = Buffer.from(JSON.stringify(envelope), "utf8");
  if (json.length > MAX_ENVELOPE) throw new SpoolError("envelope too large", { code: "EFBIG" });
  const footer = Buffer.alloc(FOOTER_SIZE);
  MAGIC.copy(footer, 0);
  footer.writeBigUInt64BE(BigInt(bodyLength), 8);
  footer.writeUInt32BE(json.length, 16);
  footer.writeUInt32BE(crc32(json), 20);
  footer.writeUInt32BE(bodyCrc >>> 0, 24);
  footer.writeUInt32BE(crc32(footer.subarray(0, 28)), 28);
  return [json, footer];
}

/** Why a file is not a whole message, or null when its footer checks out. */
function footerProblem(footer: Buffer, fileSize: number): string | null {
  if (!footer.subarray(0, 8).equals(MAGIC)) return "bad magic";
  if (footer.readUInt32BE(28) !== crc32(footer.subarray(0, 28))) return "footer checksum mismatch";
  const bodyLength = Number(footer.readBigUInt64BE(8));
  const envelopeLength = footer.readUInt32BE(16);
  if (bodyLength + envelopeLength + FOOTER_SIZE !== fileSize) return "size mismatch";
  return null;
}

function corrupt(reason: string): SpoolError {
  return new SpoolError(`corrupt spool file: ${reason}`, { code: "ECORRUPT" });
}

/** Read and check the footer of an open message file. Throws SpoolError("ECORRUPT") when it is not whole. */
export async function readFooter(fh: SpoolFileHandle): Promise<Footer> {
  const { size } = await fh.stat();
  if (size < FOOTER_SIZE) throw corrupt("shorter than a footer");
  const footer = Buffer.alloc(FOOTER_SIZE);
  await readExactly(fh, footer, size - FOOTER_SIZE);
  const problem = footerProblem(footer, size);
  if (problem !== null) throw corrupt(problem);
  return {
    bodyLength: Number(footer.readBigUInt64BE(8)),
    envelopeLength: footer.readUInt32BE(16),
    envelopeCrc: footer.readUInt32BE(20),
    bodyCrc: footer.readUInt32BE(24),
  };
}

/** Read and check the envelope of an open message file whose footer is known. */
export async function readEnvelopeAt(fh: SpoolFileHandle, footer: Footer): Promise<Envelope> {
  const json = Buffer.alloc(footer.envelopeLength);
  await readExactly(fh, json, footer.bodyLength);
  if (crc32(json) !== footer.envelopeCrc) throw corrupt("envelope checksum mismatch");
  let value: unknown;
  try {
    value = JSON.parse(json.toString("utf8"));
  } catch {
    throw corrupt("envelope is not JSON");
  }
  if (typeof value !== "object" || value === null || !Array.isArray((value as { recipients?: unknown }).recipients)) {
    throw corrupt("envelope has the wrong shape");
  }
  return value as Envelope;
}

async function readExactly(fh: SpoolFileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw corrupt("unexpected end of file");
    done += bytesRead;
  }
}

/** Write all of `buffers` at `position`, continuing after short writes. */
export async function writeAll(fh: SpoolFileHandle, buffers: Buffer[], position: number): Promise<void> {
  let remaining = buffers;
  let total = 0;
  for (const b of buffers) total += b.length;
  while (total > 0) {
    const { bytesWritten } = await fh.writev(remaining, position);
    if (bytesWritten === total) return;
    if (bytesWritten <= 0) throw new SpoolError("short write", { code: "EIO" });
    position += bytesWritten;
    total -= bytesWritten;
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const b of remaining) {
      if (skip >= b.length) {
        skip -= b.length;
      } else {
        rest.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
    }
    remaining = rest;
  }
}
