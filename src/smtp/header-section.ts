/**
 * Watches the header section of a message as it streams past (RFC 5322 §2.2,
 * §3.5) without buffering it: counts its size against a limit, records which
 * fields are present, and lets the caller add fields at its end — the way a
 * submission server adds Message-ID and Date when a client left them out
 * (RFC 6409 §8.2, §8.3).
 *
 * Input is content with CRLF line ends (as DataDecoder produces). Only the
 * start of each header line (up to its colon) is held back, never a line.
 * Asked to, it also keeps a copy of each field (name, value and exact
 * octets) for the checks at the end of data; that copy is bounded by the
 * same size limit, past which the message is refused anyway.
 */
import type { ReceivedField } from "../mail/header-field.ts";

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;
const CRLF = Buffer.from("\r\n");
/** RFC 5322 §2.1.1: 998 octets is the longest line; a field name is far shorter. */
const MAX_NAME = 998;

export interface HeaderSectionOptions {
  /** Largest header section accepted, in octets. */
  readonly sizeLimit: number;
  /** Called once when the header section ends; returns header lines (CRLF-terminated) to insert there. */
  readonly additions?: (fields: ReadonlyMap<string, number>) => string;
  /** Keep each field of the section (`collected`), the additions included. */
  readonly collect?: boolean;
}

export class HeaderSection {
  private readonly options: HeaderSectionOptions;
  /** Lower-cased field name → how many times it occurs. */
  readonly fields = new Map<string, number>();
  /** Octets of header section seen so far. */
  size = 0;
  /** The header section grew past the limit: the message must be refused. */
  tooLarge = false;
  private inBody = false;
  /** The current line's first bytes, held until it is classified. */
  private head: Buffer | null = null;
  /** Inside a classified header line (passing bytes through until LF). */
  private inLine = false;
  /** The fields seen so far, in order (only with `collect`). */
  readonly collected: ReceivedField[] = [];
  /** The octets of the field being read, while collecting. */
  private field: Buffer[] | null = null;

  constructor(options: HeaderSectionOptions) {
    this.options = options;
  }

  get ended(): boolean {
    return this.inBody;
  }

  feed(chunk: Buffer): Buffer[] {
    if (this.inBody) return [chunk];
    const out: Buffer[] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n && !this.inBody) {
      if (this.inLine) {
        const lf = chunk.indexOf(LF, i);
        const end = lf === -1 ? n : lf + 1;
        this.emitHeader(out, chunk.subarray(i, end));
        if (lf !== -1) this.inLine = false;
        i = end;
        continue;
      }
      // Line start: take bytes up to the colon, LF or the name limit.
      let j = i;
      const head = this.head;
      const held = head === null ? 0 : head.length;
      let verdict: "field" | "continuation" | "blank" | "body" | "more" = "more";
      let name = "";
      while (j < n) {
        const b = chunk[j];
        const pos = held + (j - i);
        const first = head?.[0] ?? chunk[i];
        if (pos === 0 && (b === SP || b === HT)) { verdict = "continuation"; break; }
        if (b === CR && pos === 0) { j++; continue; }
        if (b === LF) { verdict = pos === 1 && first === CR ? "blank" : "body"; break; }
        // A CR not followed by LF never starts a field name.
        if (pos === 1 && first === CR) { verdict = "body"; break; }
        if (b === COLON) {
          if (pos === 0) { verdict = "body"; break; }
          verdict = "field";
          const bytes = head === null ? chunk.subarray(i, j) : Buffer.concat([head, chunk.subarray(i, j)]);
          // RFC 5322 §4.5.6 obs-optional: white space may sit between the name and the colon.
          name = bytes.toString("latin1").toLowerCase().replace(/[ \t]+$/, "");
          break;
        }
        const prev = j > i ? chunk[j - 1] : head !== null ? head[head.length - 1] : -1;
        if (b === SP || b === HT) {
          if (pos >= MAX_NAME) { verdict = "body"; break; }
          j++;
          continue;
        }
        // RFC 5322 §3.6.8: ftext is printable US-ASCII except colon; after
        // white space only more white space or the colon may follow.
        if (b < 33 || b > 126 || pos >= MAX_NAME || prev === SP || prev === HT) { verdict = "body"; break; }
        j++;
      }
      if (verdict === "more") {
        this.head = head === null ? Buffer.from(chunk.subarray(i)) : Buffer.concat([head, chunk.subarray(i)]);
        return out;
      }
      const lineStart = head === null ? chunk.subarray(i, j) : Buffer.concat([head, chunk.subarray(i, j)]);
      this.head = null;
      if (verdict === "field" || verdict === "continuation") {
        if (verdict === "field") {
          this.fields.set(name, (this.fields.get(name) ?? 0) + 1);
          if (this.options.collect) this.startField();
        }
        this.emitHeader(out, lineStart);
        this.inLine = true;
        i = j;
        continue;
      }
      // The header section ends here: a blank line, or a line that is no header field.
      this.endHeader(out);
      if (verdict === "body") out.push(CRLF);
      if (lineStart.length > 0) out.push(lineStart);
      i = j;
      if (i < n) out.push(chunk.subarray(i));
      return out;
    }
    return out;
  }

  /** The message ended; if it had only a header section, add the additions now. */
  finish(): Buffer[] {
    if (this.inBody) return [];
    const out: Buffer[] = [];
    // The content ended inside a header line: end it before the additions.
    if (this.inLine) {
      out.push(CRLF);
      this.field?.push(CRLF);
      this.inLine = false;
    }
    if (this.head !== null) {
      out.push(this.head);
      if (this.head[this.head.length - 1] !== LF) out.push(CRLF);
      this.head = null;
    }
    this.endHeader(out);
    return out;
  }

  private emitHeader(out: Buffer[], b: Buffer): void {
    if (b.length === 0) return;
    this.size += b.length;
    if (this.size > this.options.sizeLimit) this.tooLarge = true;
    else if (this.field !== null) this.field.push(b);
    out.push(b);
  }

  private endHeader(out: Buffer[]): void {
    this.inBody = true;
    this.endField();
    const extra = this.options.additions?.(this.fields);
    if (!extra) return;
    const bytes = Buffer.from(extra, "utf8");
    out.push(bytes);
    if (!this.options.collect) return;
    // Our own additions: whole lines, no folds.
    for (let start = 0; start < bytes.length;) {
      const end = bytes.indexOf(LF, start) + 1 || bytes.length;
      this.collected.push(new CollectedField(Buffer.from(bytes.subarray(start, end))));
      start = end;
    }
  }

  private startField(): void {
    this.endField();
    this.field = [];
  }

  private endField(): void {
    const parts = this.field;
    this.field = null;
    if (parts === null || parts.length === 0 || this.tooLarge) return;
    this.collected.push(new CollectedField(Buffer.concat(parts)));
  }
}

/**
 * A collected field: name as written (white space before the colon dropped,
 * RFC 5322 §4.5.6); the value — without one leading space or the final
 * CRLF — decoded only when a check reads it.
 */
class CollectedField implements ReceivedField {
  readonly name: string;
  readonly raw: Buffer;
  private readonly colon: number;
  private decoded: string | undefined;

  constructor(raw: Buffer) {
    this.raw = raw;
    this.colon = raw.indexOf(COLON);
    this.name = raw.toString("latin1", 0, this.colon).replace(/[ \t]+$/, "");
  }

  get value(): string {
    if (this.decoded !== undefined) return this.decoded;
    const raw = this.raw;
    let from = this.colon + 1;
    if (raw[from] === SP || raw[from] === HT) from++;
    let to = raw.length;
    if (raw[to - 1] === LF) to--;
    if (raw[to - 1] === CR) to--;
    this.decoded = raw.toString("utf8", from, Math.max(from, to));
    return this.decoded;
  }
}

