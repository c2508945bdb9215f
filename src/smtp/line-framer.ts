/**
 * The input side of a server session: the octets received and not yet
 * consumed, cut into command lines (RFC 5321 §2.3.8, §4.5.3.1.4) with the
 * length limits applied, and the water marks that tell the connection to stop
 * and resume reading (back-pressure). Message data is taken from the same
 * queue in whole chunks by the message receiver.
 */

/** A command that never ends is cut off after this many octets without LF. */
export const MAX_UNTERMINATED_LINE = 1024 * 1024;
/**
 * RFC 4954 §4: AUTH lines carry base64 of any length a mechanism needs;
 * 12288 octets is "a sufficient line length limit" for the AUTH command with
 * its initial response and for the responses to 334 challenges.
 */
export const AUTH_LINE = 12288;
/** Buffered input while a decision is pending before the connection stops reading. */
const HIGH_WATER = 256 * 1024;

const LF = 0x0a;
const SP = 0x20;

/**
 * What `takeLine()` found: a whole line with its line end, nothing complete
 * yet (null), a line over the limit that was thrown away up to its LF, or a
 * line that never ends within MAX_UNTERMINATED_LINE (the session closes).
 */
export type FramedLine = Buffer | "too long" | "never ends" | null;

/** Lines in "auth" are responses to 334 challenges; "command" lines are commands. */
export type LineKind = "command" | "auth";

export class LineFramer {
  private readonly chunks: Buffer[] = [];
  private octets = 0;
  /** Octets of an over-long line thrown away so far; -1 when not discarding. */
  private discarding = -1;
  private readonly commandLine: number;

  /** `commandLine`: the longest command line, CRLF included (limits.commandLine). */
  constructor(commandLine: number) {
    this.commandLine = commandLine;
  }

  /** Octets received and not yet consumed. */
  get queued(): number {
    return this.octets;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.octets += chunk.length;
  }

  /** The oldest chunk, whole (message data is consumed chunk by chunk). */
  shift(): Buffer {
    const b = this.chunks.shift()!;
    this.octets -= b.length;
    return b;
  }

  /** Give back what a consumer did not use; it is read first next time. */
  unshift(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.unshift(b);
    this.octets += b.length;
  }

  /** Throw away everything queued; returns how many octets that was. */
  clear(): number {
    const dropped = this.octets;
    this.chunks.length = 0;
    this.octets = 0;
    return dropped;
  }

  /** Enough is queued to stop reading from the client. */
  get aboveHighWater(): boolean {
    return this.octets > HIGH_WATER;
  }

  /** Little enough is queued to read again. */
  get belowLowWater(): boolean {
    return this.octets < HIGH_WATER / 2;
  }

  /**
   * The longest line, CRLF included, that takeLine() waits for when `head`
   * starts the queue: responses to 334 and AUTH command lines may be up to
   * AUTH_LINE octets (RFC 4954 §4), every other command limits.commandLine.
   */
  lineLimit(kind: LineKind, head: Buffer | undefined = this.chunks[0]): number {
    const long = kind === "auth" || (head !== undefined && startsWithAuth(head));
    return long ? Math.max(this.commandLine, AUTH_LINE) : this.commandLine;
  }

  /**
   * Whether takeLine() can make progress now. A partial line cannot progress
   * until more input arrives, but only a single chunk without LF that is
   * within the line limit waits; anything else (several chunks to join, an
   * over-long line to discard) must be processed now, or a paused transport
   * is never resumed. The limit is the same as takeLine()'s, or a partial
   * AUTH line between the two limits would restart the pump forever.
   */
  canProgress(kind: LineKind): boolean {
    return this.chunks.length > 1 || this.discarding >= 0 || this.octets > this.lineLimit(kind) ||
      this.chunks.some((b) => b.includes(LF));
  }

  /**
   * The next line with its line end (checked by the caller: a bare LF ends a
   * line here so that it can be refused), or what stands in the way.
   */
  takeLine(kind: LineKind): FramedLine {
    while (this.chunks.length > 0) {
      const head = this.chunks[0];
      if (this.discarding >= 0) {
        const lf = head.indexOf(LF);
        if (lf === -1) {
          this.discarding += head.length;
          this.shift();
          if (this.discarding > MAX_UNTERMINATED_LINE) return "never ends";
          continue;
        }
        this.shift();
        this.unshift(head.subarray(lf + 1));
        this.discarding = -1;
        return "too long";
      }
      const limit = this.lineLimit(kind, head);
      const lf = head.indexOf(LF);
      if (lf === -1) {
        if (head.length > limit) {
          // Over the limit already: throw it away rather than join it with what follows.
          this.shift();
          this.discarding = head.length;
          if (this.discarding > MAX_UNTERMINATED_LINE) return "never ends";
          continue;
        }
        if (this.chunks.length === 1) return null;
        // Join with the next chunk and look again (lines are short; this is rare).
        this.shift();
        const next = this.shift();
        this.unshift(Buffer.concat([head, next]));
        continue;
      }
      this.shift();
      if (lf + 1 > limit) {
        this.unshift(head.subarray(lf + 1));
        return "too long";
      }
      const line = head.subarray(0, lf + 1);
      this.unshift(head.subarray(lf + 1));
      return line;
    }
    return null;
  }
}

/** "AUTH " in any case: verbs are case-insensitive (RFC 5321 §2.4). */
function startsWithAuth(b: Buffer): boolean {
  return b.length >= 5 && (b[0] | 0x20) === 0x61 && (b[1] | 0x20) === 0x75 && (b[2] | 0x20) === 0x74 &&
    (b[3] | 0x20) === 0x68 && b[4] === SP;
}
