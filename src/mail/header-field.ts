/**
 * Header fields of a message (RFC 5322 §2.2) as the boxes pass them around:
 * the fields a check wants added, the changes it wants made to the header
 * section as stored, and the header section as received. Plain data; the
 * envelope stores the decided ones (mail/envelope.ts), the spool applies them
 * when a message is read back (spool/stored-message.ts).
 */

/** A header field: its name as written and its value without the leading space or final CRLF (folds kept as CRLF + WSP). */
export interface HeaderField {
  readonly name: string;
  readonly value: string;
}

/** A field of the header section as stored, with its exact octets (final CRLF included): DKIM's "simple" canonicalization needs them. */
export interface ReceivedField extends HeaderField {
  readonly raw: Buffer;
}

/**
 * One change to the header section as stored (our Received: field first,
 * as the end-of-data checks saw it). `index` counts the fields of that name
 * from 1 (a milter's convention), `position` counts all fields from 0; both
 * refer to the section as stored, not as changed by other edits, so a set of
 * edits means the same whatever order it is applied in.
 */
export type HeaderEdit =
  /** Replace the value of the `index`-th field named `name`; past the last one, the field is added at the end of the section. */
  | { readonly op: "change"; readonly name: string; readonly index: number; readonly value: string }
  | { readonly op: "delete"; readonly name: string; readonly index: number }
  /** Insert before the field at `position` (0 = before the first; past the last = at the end of the section). */
  | { readonly op: "insert"; readonly position: number; readonly field: HeaderField };

/** RFC 5322 §3.6.8 field-name: printable US-ASCII except colon. */
const FIELD_NAME = /^[!-9;-~]{1,997}$/;

export function isFieldName(name: string): boolean {
  return FIELD_NAME.test(name);
}

/**
 * A field as header lines, CRLF-terminated: line ends of any kind become
 * CRLF (filters such as OpenDKIM fold with a bare LF), a line that does not
 * start with white space is made a continuation (a value can never start a
 * new field), empty lines are dropped (they would end the header section),
 * and other control characters become spaces. Null when the name is no
 * field name.
 */
export function formatField(field: HeaderField): string | null {
  if (!isFieldName(field.name)) return null;
  const lines = field.value.split(/\r\n|\r|\n/).map((l) => l.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, " "));
  let out = `${field.name}: ${lines[0]}`;
  for (const line of lines.slice(1)) {
    if (line.trim() === "") continue;
    out += "\r\n" + (line[0] === " " || line[0] === "\t" ? line : "\t" + line);
  }
  return out + "\r\n";
}
