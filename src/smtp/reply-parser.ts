/**
 * The client side of RFC 5321 §4.2: turns the bytes a server sends into
 * `Reply` values, incrementally (any split of the input gives the same
 * replies).
 *
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *                   Reply-code [ SP textstring ] CRLF
 *
 * - Multi-line replies: every line but the last has "-" after the code; all
 *   lines must carry the same code, else it is a protocol error.
 * - An RFC 3463 enhanced status code (RFC 2034 §4: "X.Y.Z" at the start of
 *   the text, its class equal to the reply's first digit) is taken from the
 *   first line and removed from every line that starts with it.
 * - Liberal in what it accepts from servers, but never about boundaries:
 *   a bare LF ends a line (a trailing CR before it is dropped), a bare CR
 *   inside a line is text; a line with no code, or a code not 2yz..5yz,
 *   is an error. "250" alone (no text) is a last line with empty text.
 * - Limits: a line of more than `maxLine` octets (8 KiB) or a reply of more
 *   than `maxLines` lines (100) is a protocol error, so a hostile server
 *   cannot make the client buffer without end.
 *
 * Pure: bytes in, replies out; no I/O.
 */
import type { Reply } from "./reply.ts";

export class ReplyParseError extends Error {
  override name = "ReplyParseError";
}

export interface ReplyParserLimits {
  /** Octets per line, without the line end. Default 8192. */
  maxLine?: number;
  /** Lines per reply. Default 100. */
  maxLines?: number;
}

const LF = 0x0a;
const CR = 0x0d;
const LINE = /^([2-5][0-9][0-9])(?:([ -])(.*))?$/s;
const ENHANCED = /^([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |$)/;

export class ReplyParser {
  readonly #maxLine: number;
  readonly #maxLines: number;
  /** The unfinished line's bytes. */
  #partial: Buffer[] = [];
  #partialLength = 0;
  /** Lines of the reply being read: code and text. */
  #code = -1;
  #lines: string[] = [];
  #failed: ReplyParseError | null = null;

  constructor(limits: ReplyParserLimits = {}) {
    this.#maxLine = limits.maxLine ?? 8192;
    this.#maxLines = limits.maxLines ?? 100;
  }

  /** Feed bytes; returns the replies they completed (possibly none). Throws ReplyParseError. */
  push(chunk: Uint8Array): Reply[] {
    if (this.#failed) throw this.#failed;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: Reply[] = [];
    let pos = 0;
    try {
      while (pos < buf.length) {
        const lf = buf.indexOf(LF, pos);
        if (lf === -1) {
          this.#append(buf.subarray(pos));
          break;
        }
        this.#append(buf.subarray(pos, lf));
        const line = this.#partialLength === 0 ? Buffer.alloc(0) : Buffer.concat(this.#partial, this.#partialLength);
        this.#partial = [];
        this.#partialLength = 0;
        pos = lf + 1;
        const r = this.#line(line[line.length - 1] === CR ? line.subarray(0, -1) : line);
        if (r) out.push(r);
      }
    } catch (err) {
      if (err instanceof ReplyParseError) this.#failed = err;
      throw err;
    }
    return out;
  }

  /** True when bytes of an unfinished reply are buffered (e.g. data pipelined after a STARTTLS 220). */
  get pending(): boolean {
    return this.#partialLength > 0 || this.#lines.length > 0;
  }

  /** Forget buffered bytes and any reply in progress (after STARTTLS, RFC 3207 §4.2). */
  reset(): void {
    this.#partial = [];
    this.#partialLength = 0;
    this.#code = -1;
    this.#lines = [];
  }

  #append(part: Buffer): void {
    if (part.length === 0) return;
    // +1: the CR of a CRLF may be the last byte of a line at the limit.
    if (this.#partialLength + part.length > this.#maxLine + 1) {
      throw new ReplyParseError(`reply line longer than ${this.#maxLine} octets`);
    }
    this.#partial.push(part);
    this.#partialLength += part.length;
  }

  #line(bytes: Buffer): Reply | null {
    if (bytes.length > this.#maxLine) throw new ReplyParseError(`reply line longer than ${this.#maxLine} octets`);
    const text = bytes.toString("utf8");
    const m = LINE.exec(text);
    if (!m) throw new ReplyParseError(`malformed reply line ${JSON.stringify(text.slice(0, 80))}`);
    const code = Number(m[1]);
    if (this.#code !== -1 && code !== this.#code) {
      throw new ReplyParseError(`reply code changed from ${this.#code} to ${code} within a multi-line reply`);
    }
    this.#code = code;
    this.#lines.push(m[3] ?? "");
    if (this.#lines.length > this.#maxLines) throw new ReplyParseError(`reply of more than ${this.#maxLines} lines`);
    if (m[2] === "-") return null;
    const lines = this.#lines;
    this.#code = -1;
    this.#lines = [];
    return makeReply(code, lines);
  }
}

/** Split off the enhanced status code (when the first line has one of the reply's class). */
function makeReply(code: number, lines: string[]): Reply {
  const m = ENHANCED.exec(lines[0]);
  if (!m || Number(m[1]) !== Math.floor(code / 100)) return { code, lines };
  const status = `${m[1]}.${Number(m[2])}.${Number(m[3])}`;
  const prefix = m[0].trimEnd();
  const stripped = lines.map((l) => (l === prefix ? "" : l.startsWith(prefix + " ") ? l.slice(prefix.length + 1) : l));
  return { code, status, lines: stripped };
}

