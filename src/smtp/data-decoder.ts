/**
 * The DATA body decoder (RFC 5321 §4.1.1.4, §4.5.2): turns the dot-stuffed
 * stream a client sends after "354" into message content, and finds the end
 * of the data.
 *
 * SMTP smuggling (CVE-2023-51764/5/6) is decided here, so the rules are strict:
 * - Only <CRLF>.<CRLF> ends the data: the dot line must start right after a
 *   real CRLF (or right after the DATA command's own CRLF) and be followed by
 *   a real CRLF. "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", NUL before the dot …
 *   are all content.
 * - A bare LF is, per the `bareNewline` setting like Postfix 3.9's
 *   smtpd_forbid_bare_newline, either normalised to CRLF inside content
 *   ("normalize") or recorded so the whole message is refused ("reject").
 *   A line ended by a bare LF never makes the next line eligible to end the
 *   data.
 * - A bare CR is content (as in Postfix) in "normalize" mode and refused in
 *   "reject" mode.
 *
 * The decoder never buffers a line: it returns sub-arrays of the input, so
 * a 20 MiB line costs no more memory than a 20-byte one. At most two bytes
 * (".", ".\r") are carried between chunks.
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from("\r\n");

export type BareNewlinePolicy = "normalize" | "reject";

export interface DecodeResult {
  /** Decoded content, in order; sub-arrays of the input where possible. */
  readonly content: Buffer[];
  /** True once <CRLF>.<CRLF> was seen. */
  readonly done: boolean;
  /** Bytes after the end-of-data line (pipelined commands); empty if not done. */
  readonly rest: Buffer;
}

/** Where the decoder stands between bytes. */
const enum_ = {
  /** At the start of a line that followed a real CRLF: may end the data. */
  lineStart: 0,
  /** At the start of a line that followed a bare LF: dot-unstuffing only. */
  lineStartAfterBareLf: 1,
  /** Inside a line. */
  inLine: 2,
} as const;
type State = (typeof enum_)[keyof typeof enum_];

export class DataDecoder {
  private state: State = enum_.lineStart;
  /** The last content byte emitted was CR (a CRLF may straddle chunks). */
  private lastWasCr = false;
  /** Bytes of a possible end-of-data line held back across chunks: "." or ".\r". */
  private carry: Buffer | null = null;
  private carryFromBareLf = false;
  private readonly policy: BareNewlinePolicy;
  /** A bare LF was seen somewhere in the content. */
  bareLfSeen = false;
  /** A bare CR was seen somewhere in the content. */
  bareCrSeen = false;
  /** The previous chunk ended in CR inside a line; the next byte decides. */
  private pendingCr = false;

  constructor(policy: BareNewlinePolicy) {
    this.policy = policy;
  }

  /**
   * Decode the next chunk. Content comes out as few sub-arrays as the input
   * allows: a run of lines is one sub-array; it is cut only where a byte is
   * dropped (a stuffed dot) or replaced (a bare LF made CRLF).
   */
  feed(input: Buffer): DecodeResult {
    let chunk = input;
    if (this.carry !== null) {
      chunk = Buffer.concat([this.carry, input]);
      this.carry = null;
      this.state = this.carryFromBareLf ? enum_.lineStartAfterBareLf : enum_.lineStart;
    }
    const content: Buffer[] = [];
    const n = chunk.length;
    let i = 0;
    /** Start of the content not yet emitted: chunk[run, i) is content. */
    let run = 0;
    while (i < n) {
      if (this.state !== enum_.inLine) {
        if (chunk[i] === DOT) {
          // Need to know whether this is ".<CRLF>" (end) or a stuffed line.
          if (n - i < 3 && isPrefixOfDotCrlf(chunk, i)) {
            this.emit(content, chunk, run, i);
            this.carry = Buffer.from(chunk.subarray(i));
            this.carryFromBareLf = this.state === enum_.lineStartAfterBareLf;
            return { content, done: false, rest: EMPTY };
          }
          if (chunk[i + 1] === CR && chunk[i + 2] === LF) {
            if (this.state === enum_.lineStart) {
              this.emit(content, chunk, run, i);
              return { content, done: true, rest: chunk.subarray(i + 3) };
            }
            // ".<CRLF>" after a bare LF: content, kept literally (never an end).
            this.bareLfSeen = true;
            this.lastWasCr = false;
            this.state = enum_.lineStart;
            i += 3;
            continue;
          }
          if (chunk[i + 1] === LF) {
            // ".\n": a dot line ended by a bare LF is content, never an end.
            this.noteBare();
            this.emit(content, chunk, run, i + 1);
            content.push(CRLF);
            this.lastWasCr = false;
            this.state = enum_.lineStartAfterBareLf;
            i += 2;
            run = i;
            continue;
          }
          // A stuffed line: drop the leading dot (§4.5.2).
          this.emit(content, chunk, run, i);
          i += 1;
          run = i;
        }
        this.state = enum_.inLine;
        continue;
      }
      const lf = chunk.indexOf(LF, i);
      const end = lf === -1 ? n : lf;
      if (this.policy === "reject") this.scanBareCr(chunk, i, end, lf !== -1);
      if (lf === -1) {
        this.lastWasCr = chunk[n - 1] === CR;
        this.emit(content, chunk, run, n);
        return { content, done: false, rest: EMPTY };
      }
      const crBefore = lf > i ? chunk[lf - 1] === CR : this.lastWasCr;
      if (crBefore) {
        this.state = enum_.lineStart;
      } else {
        this.noteBare();
        this.emit(content, chunk, run, lf);
        content.push(CRLF);
        run = lf + 1;
        this.state = enum_.lineStartAfterBareLf;
      }
      this.lastWasCr = false;
      i = lf + 1;
    }
    this.emit(content, chunk, run, n);
    return { content, done: false, rest: EMPTY };
  }

  /** chunk[from, to) is content. */
  private emit(content: Buffer[], chunk: Buffer, from: number, to: number): void {
    if (to > from) content.push(from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to));
  }

  private noteBare(): void {
    this.bareLfSeen = true;
  }

  /** True when the content broke the CRLF rule (used by the "reject" policy). */
  get bareNewlineSeen(): boolean {
    return this.bareLfSeen || this.bareCrSeen;
  }

  /**
   * Record a bare CR in [from, end), where end is the index of the LF that
   * ends the line or the chunk's length. A CR right before that LF is the
   * CR of CRLF; a CR as the chunk's last byte is decided by the next chunk.
   */
  private scanBareCr(chunk: Buffer, from: number, end: number, lfFound: boolean): void {
    if (this.pendingCr) {
      this.pendingCr = false;
      if (from < chunk.length && chunk[from] !== LF) this.bareCrSeen = true;
    }
    const j = chunk.indexOf(CR, from);
    if (j === -1 || j >= end) return;
    if (j < end - 1) this.bareCrSeen = true;
    else if (!lfFound) this.pendingCr = true;
  }
}

const EMPTY = Buffer.alloc(0);

function isPrefixOfDotCrlf(b: Buffer, i: number): boolean {
  // b[i] is ".", and fewer than 3 bytes remain: ".", ".\r" could still become ".\r\n".
  return b.length - i === 1 || b[i + 1] === CR;
}
