import { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import { SpoolError } from "./spool.ts";

/**
 * Reading a stored body back, for both spool formats: `length` bytes from
 * `offset`, streamed in chunks, with the CRC-32 checked at the end — a body
 * damaged on disk surfaces as an ECORRUPT stream error, never as mail.
 */

const READ_CHUNK = 64 * 1024;

interface PositionalFile {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

export interface BodyLocation {
  readonly offset: number;
  readonly length: number;
  readonly crc: number;
}

/**
 * `locate` opens the file and finds the body (it may read a footer or use an
 * index); errors from it or from reading reject the stream as SpoolErrors.
 */
export function checkedBodyStream<H extends PositionalFile>(
  describe: string,
  locate: () => Promise<{ handle: H; body: BodyLocation }>,
  wrap: (what: string, err: unknown) => SpoolError,
): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    let handle: H | null = null;
    try {
      const found = await locate();
      handle = found.handle;
      const { offset, length, crc: expected } = found.body;
      let crc = 0;
      let done = 0;
      while (done < length) {
        const size = Math.min(READ_CHUNK, length - done);
        const buf = Buffer.allocUnsafe(size);
        const { bytesRead } = await handle.read(buf, 0, size, offset + done);
        if (bytesRead === 0) throw new SpoolError("unexpected end of file", { code: "ECORRUPT" });
        const chunk = bytesRead === size ? buf : buf.subarray(0, bytesRead);
        crc = crc32(chunk, crc);
        done += bytesRead;
        yield chunk;
      }
      if (crc !== expected) throw new SpoolError("body checksum mismatch", { code: "ECORRUPT" });
    } catch (err) {
      throw wrap(`cannot read body of ${describe}`, err);
    } finally {
      await handle?.close().catch(() => {});
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}
