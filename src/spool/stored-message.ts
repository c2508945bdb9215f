/**
 * A message as every reader gets it back from the spool: the body exactly as
 * committed, with the header decisions made at the end of data (stored in
 * its envelope: `prepend`, `headerEdits`) applied on the way out. The body
 * went to disk while it streamed in, before those decisions existed; keeping
 * them with the envelope commits them in the same fsync, in either spool
 * format, and this one function makes every reader — the queue's agents, the
 * original returned in a DSN — see the same message.
 *
 * Streaming throughout: the prepended fields go first; the header section is
 * edited one field at a time; once it has ended, chunks pass through
 * untouched. Nothing of the body is buffered.
 */
import { PassThrough, Transform, type Readable, type TransformCallback } from "node:stream";
import type { Envelope } from "../mail/envelope.ts";
import { formatField, type HeaderEdit } from "../mail/header-field.ts";

const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
/** A header line that starts a field: a name (RFC 5322 §3.6.8 ftext), optional white space (§4.5.6), a colon. */
const FIELD_START = /^([!-9;-~]+)[ \t]*:/;

/** The message to hand on: `body` (the spool's stream of the committed octets) with the envelope's header decisions applied. */
export function storedMessage(envelope: Pick<Envelope, "prepend" | "headerEdits">, body: Readable): Readable {
  const prepend = envelope.prepend ?? "";
  const edits = envelope.headerEdits ?? [];
  if (prepend === "" && edits.length === 0) return body;
  const top = Buffer.from(prepend, "utf8");
  const out = edits.length > 0 ? new HeaderEditor(edits, top) : new PassThrough();
  if (edits.length === 0) out.write(top);
  body.on("error", (err) => out.destroy(err));
  // A reader that stops early (a DSN that returns only the headers) releases the file too.
  out.on("close", () => body.destroy());
  body.pipe(out);
  return out;
}

/** The size of the message `storedMessage` gives, for a body of `bodySize` octets whose header section has these fields. */
export function storedSize(bodySize: number, prepend: string, edits: readonly HeaderEdit[], fields: readonly { readonly name: string; readonly raw: Buffer }[]): number {
  let size = bodySize + Buffer.byteLength(prepend, "utf8");
  if (edits.length === 0) return size;
  const plan = new EditPlan(edits);
  const counts = new Map<string, number>();
  fields.forEach((f, position) => {
    const name = f.name.toLowerCase();
    const index = (counts.get(name) ?? 0) + 1;
    counts.set(name, index);
    for (const field of plan.insertsAt(position)) size += field.length;
    const replaced = plan.replacement(name, index, f.name);
    if (replaced !== undefined) size += replaced.length - f.raw.length;
  });
  for (const field of plan.atEnd(fields.length, counts)) size += field.length;
  return size;
}

/** The edits, indexed for a single pass over the fields. */
class EditPlan {
  private readonly inserts = new Map<number, Buffer[]>();
  private readonly changes = new Map<string, { readonly name: string; readonly value: string }>();
  private readonly deletes = new Set<string>();

  constructor(edits: readonly HeaderEdit[]) {
    for (const e of edits) {
      if (e.op === "insert") {
        const field = formatField(e.field);
        if (field === null) continue;
        const at = Math.max(0, Math.floor(e.position));
        this.inserts.set(at, [...(this.inserts.get(at) ?? []), Buffer.from(field, "utf8")]);
      } else if (e.op === "delete") {
        this.deletes.add(key(e.name, e.index));
      } else {
        this.changes.set(key(e.name, e.index), { name: e.name, value: e.value });
      }
    }
  }

  insertsAt(position: number): readonly Buffer[] {
    const found = this.inserts.get(position);
    if (found) this.inserts.delete(position);
    return found ?? [];
  }

  /** The field's new octets: empty when deleted, a new field when changed, undefined when kept. */
  replacement(lowerName: string, index: number, writtenName: string): Buffer | undefined {
    const k = `${lowerName}\0${index}`;
    if (this.deletes.has(k)) {
      this.changes.delete(k);
      return Buffer.alloc(0);
    }
    const change = this.changes.get(k);
    if (change === undefined) return undefined;
    this.changes.delete(k);
    const field = formatField({ name: writtenName, value: change.value });
    return field === null ? undefined : Buffer.from(field, "utf8");
  }

  /** What goes at the end of the section: inserts past the last field, then changes of fields that do not exist (added, as a milter's chgheader does). */
  atEnd(fieldCount: number, counts: ReadonlyMap<string, number>): Buffer[] {
    const out: Buffer[] = [];
    for (const at of [...this.inserts.keys()].sort((a, b) => a - b)) if (at >= fieldCount) out.push(...this.inserts.get(at)!);
    this.inserts.clear();
    for (const [k, change] of this.changes) {
      const [name, index] = k.split("\0");
      if (Number(index) <= (counts.get(name) ?? 0)) continue;
      const field = formatField(change);
      if (field !== null) out.push(Buffer.from(field, "utf8"));
    }
    this.changes.clear();
    return out;
  }
}

function key(name: string, index: number): string {
  return `${name.toLowerCase()}\0${index}`;
}

/**
 * Applies edits to the header section as it streams past: holds one field
 * (its line and continuation lines) at a time, writes it as it is, changed,
 * or not at all, and passes everything after the header section through.
 */
class HeaderEditor extends Transform {
  private readonly plan: EditPlan;
  private inBody = false;
  /** A header line not yet ended by LF. */
  private partial: Buffer | null = null;
  /** The lines of the field being read, its name as written. */
  private field: Buffer[] = [];
  private fieldName = "";
  private position = 0;
  private readonly counts = new Map<string, number>();

  /** The prepended fields: written first, never edited. */
  private top: Buffer | null;

  constructor(edits: readonly HeaderEdit[], top: Buffer) {
    super();
    this.plan = new EditPlan(edits);
    this.top = top.length > 0 ? top : null;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.pushTop();
    if (this.inBody) {
      done(null, chunk);
      return;
    }
    let start = 0;
    while (start < chunk.length && !this.inBody) {
      const lf = chunk.indexOf(LF, start);
      if (lf === -1) {
        const rest = chunk.subarray(start);
        this.partial = this.partial === null ? Buffer.from(rest) : Buffer.concat([this.partial, rest]);
        done();
        return;
      }
      let line = chunk.subarray(start, lf + 1);
      if (this.partial !== null) {
        line = Buffer.concat([this.partial, line]);
        this.partial = null;
      }
      start = lf + 1;
      this.line(line);
    }
    if (start < chunk.length) this.push(chunk.subarray(start));
    done();
  }

  override _flush(done: TransformCallback): void {
    this.pushTop();
    if (!this.inBody) {
      if (this.partial !== null) this.line(this.partial);
      if (!this.inBody) this.endHeader();
    }
    done();
  }

  private pushTop(): void {
    if (this.top === null) return;
    this.push(this.top);
    this.top = null;
  }

  private line(line: Buffer): void {
    const first = line[0];
    if ((first === SP || first === HT) && this.fieldName !== "") {
      this.field.push(line);
      return;
    }
    const m = first === SP || first === HT ? null : FIELD_START.exec(line.toString("latin1", 0, Math.min(line.length, 1000)));
    if (m !== null) {
      this.endField();
      this.fieldName = m[1];
      this.field = [line];
      return;
    }
    if (first === SP || first === HT) {
      // White space before any field: not part of one; kept as it is.
      this.push(line);
      return;
    }
    // A blank line, or a line that is no field: the header section ends before it.
    this.endHeader();
    this.push(line);
  }

  private endField(): void {
    if (this.fieldName === "") return;
    const name = this.fieldName.toLowerCase();
    const index = (this.counts.get(name) ?? 0) + 1;
    this.counts.set(name, index);
    for (const inserted of this.plan.insertsAt(this.position)) this.push(inserted);
    this.position++;
    const replaced = this.plan.replacement(name, index, this.fieldName);
    if (replaced === undefined) for (const l of this.field) this.push(l);
    else if (replaced.length > 0) this.push(replaced);
    this.field = [];
    this.fieldName = "";
  }

  private endHeader(): void {
    this.endField();
    for (const added of this.plan.atEnd(this.position, this.counts)) this.push(added);
    this.inBody = true;
  }
}
