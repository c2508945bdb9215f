/**
 * Splits message content as it streams (CRLF line ends, header section
 * first) into what the milter protocol sends: one header field at a time,
 * the end of the header section, then body bytes. Holds back at most one
 * header field (bounded by the header section limit the intake enforces),
 * never the body.
 *
 * RFC 5322 §2.2: a field is a name, a colon and a value; a line starting
 * with white space continues the previous field (§2.2.3). The header section
 * ends at the first empty line, or at the first line that is not a field
 * (that line then starts the body, as Postfix treats it).
 */

export type ContentPart =
  | { readonly kind: "header"; readonly name: string; readonly value: Buffer }
  | { readonly kind: "endOfHeaders" }
  | { readonly kind: "body"; readonly data: Buffer };

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;

export class ContentSplitter {
  private readonly limit: number;
  private inBody = false;
  /** The current field's lines so far (CRLF kept), and the start of the next line. */
  private field: Buffer[] = [];
  private fieldLength = 0;
  private line: Buffer[] = [];
  private lineLength = 0;
  /** The header section grew past the limit: the intake refuses the message; nothing more is split. */
  tooLarge = false;

  constructor(headerSizeLimit: number) {
    this.limit = headerSizeLimit;
  }

  feed(chunk: Buffer): ContentPart[] {
    if (this.tooLarge) return [];
    if (this.inBody) return chunk.length > 0 ? [{ kind: "body", data: chunk }] : [];
    const out: ContentPart[] = [];
    let i = 0;
    while (i < chunk.length && !this.inBody) {
      const lf = chunk.indexOf(LF, i);
      const end = lf === -1 ? chunk.length : lf + 1;
      this.line.push(chunk.subarray(i, end));
      this.lineLength += end - i;
      i = end;
      if (this.fieldLength + this.lineLength > this.limit) {
        this.tooLarge = true;
        return out;
      }
      if (lf === -1) break;
      this.takeLine(Buffer.concat(this.line), out);
      this.line = [];
      this.lineLength = 0;
    }
    if (this.inBody && i < chunk.length) out.push({ kind: "body", data: chunk.subarray(i) });
    return out;
  }

  /** The content ended: whatever is held is the last field (or body). */
  finish(): ContentPart[] {
    if (this.tooLarge || this.inBody) return [];
    const out: ContentPart[] = [];
    if (this.lineLength > 0) this.takeLine(Buffer.concat(this.line), out);
    this.line = [];
    this.lineLength = 0;
    if (!this.inBody) {
      this.flushField(out);
      this.inBody = true;
      out.push({ kind: "endOfHeaders" });
    }
    return out;
  }

  private takeLine(line: Buffer, out: ContentPart[]): void {
    const first = line[0];
    if ((first === SP || first === HT) && this.field.length > 0) {
      this.field.push(line);
      this.fieldLength += line.length;
      return;
    }
    this.flushField(out);
    const blank = line.length === 2 && line[0] === CR && line[1] === LF;
    if (blank || fieldNameEnd(line) === -1) {
      this.inBody = true;
      out.push({ kind: "endOfHeaders" });
      if (!blank) out.push({ kind: "body", data: line });
      return;
    }
    this.field = [line];
    this.fieldLength = line.length;
  }

  private flushField(out: ContentPart[]): void {
    if (this.field.length === 0) return;
    const raw = Buffer.concat(this.field);
    this.field = [];
    this.fieldLength = 0;
    const colon = raw.indexOf(COLON);
    const name = raw.subarray(0, colon).toString("latin1").replace(/[ \t]+$/, "");
    let end = raw.length;
    if (end > 0 && raw[end - 1] === LF) end--;
    if (end > colon + 1 && raw[end - 1] === CR) end--;
    out.push({ kind: "header", name, value: raw.subarray(colon + 1, end) });
  }
}

/** The index of the colon ending a field name (RFC 5322 §3.6.8 ftext, white space before the colon tolerated), or -1. */
function fieldNameEnd(line: Buffer): number {
  let sawSpace = false;
  for (let i = 0; i < line.length; i++) {
    const b = line[i];
    if (b === COLON) return i === 0 ? -1 : i;
    if (b === SP || b === HT) {
      if (i === 0) return -1;
      sawSpace = true;
      continue;
    }
    if (b < 33 || b > 126 || sawSpace) return -1;
  }
  return -1;
}
