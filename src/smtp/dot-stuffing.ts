/**
 * The DATA body encoder (RFC 5321 §4.5.2), the client side of `data-decoder.ts`:
 * turns message content into what an SMTP or LMTP client sends after "354".
 *
 * - A line that starts with "." gets one more "." in front (transparency).
 * - Line ends stay CRLF. A bare LF (which a spooled message should not
 *   contain) is sent as CRLF, so no content can ever form "<LF>.<CRLF>" or
 *   "<CRLF>.<LF>"-style sequences a lenient receiver might take for the end
 *   of data (SMTP smuggling). A bare CR is content and passes unchanged.
 * - `end()` adds the terminator: "<CRLF>.<CRLF>", or only ".<CRLF>" when the
 *   content already ended with a line end (or was empty: the DATA command's
 *   own CRLF then starts the dot line).
 *
 * The encoder never buffers a line: `encode()` returns sub-arrays of its input
 * with the inserted bytes between them, and carries only two facts between
 * chunks (are we at a line start, was the last byte CR), so every split of
 * the input gives the same output bytes.
 */
import { Transform, type TransformCallback } from "node:stream";

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const DOT_BUF = Buffer.from(".");
const CR_BUF = Buffer.from("\r");
const END_AT_LINE_START = Buffer.from(".\r\n");
const END_IN_LINE = Buffer.from("\r\n.\r\n");

export class DotStuffer {
  /** The next byte starts a line (initially: right after the DATA command's CRLF). */
  private atLineStart = true;
  /** The last byte of the previous chunk was CR (its LF may start the next chunk). */
  private lastWasCr = false;
  private ended = false;

  /** Encode one chunk of content; the returned buffers are sent in order. */
  encode(chunk: Uint8Array): Buffer[] {
    if (this.ended) throw new Error("DotStuffer: encode() after end()");
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: Buffer[] = [];
    const len = buf.length;
    let start = 0; // first byte not yet emitted
    let pos = 0; // start of the current line segment within this chunk
    while (pos < len) {
      if (this.atLineStart && buf[pos] === DOT) {
        if (pos > start) out.push(buf.subarray(start, pos));
        out.push(DOT_BUF);
        start = pos; // the original dot follows the inserted one
      }
      this.atLineStart = false;
      const lf = buf.indexOf(LF, pos);
      if (lf === -1) {
        this.lastWasCr = buf[len - 1] === CR;
        break;
      }
      const crBefore = lf > 0 ? buf[lf - 1] === CR : this.lastWasCr;
      if (!crBefore) {
        // Bare LF: send CRLF.
        if (lf > start) out.push(buf.subarray(start, lf));
        out.push(CR_BUF);
        start = lf;
      }
      this.lastWasCr = false;
      this.atLineStart = true;
      pos = lf + 1;
    }
    if (start < len) out.push(start === 0 ? buf : buf.subarray(start));
    return out;
  }

  /** The end-of-data terminator; call once after the last chunk. */
  end(): Buffer {
    if (this.ended) throw new Error("DotStuffer: end() called twice");
    this.ended = true;
    return this.atLineStart ? END_AT_LINE_START : END_IN_LINE;
  }
}

/** Dot-stuff a whole buffer (for tests and small messages). */
export function dotStuff(content: Uint8Array): Buffer {
  const s = new DotStuffer();
  return Buffer.concat([...s.encode(content), s.end()]);
}

/** A Transform stream: content in, DATA wire form (terminator included) out. */
export function dotStuffingStream(): Transform {
  const s = new DotStuffer();
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      for (const b of s.encode(chunk)) this.push(b);
      cb();
    },
    flush(cb: TransformCallback) {
      this.push(s.end());
      cb();
    },
  });
}
