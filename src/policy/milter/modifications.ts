import type { HeaderEdit } from "../check.ts";
import { formatMailbox, parsePath } from "../../smtp/address.ts";
import type { Modification } from "./answers.ts";

/**
 * Turns a filter's end-of-message changes into a check's header edits and
 * recipient changes.
 *
 * A filter's header changes apply one after the other (Sendmail's
 * semantics): SMFIR_INSHEADER index 0 is the top of the section as it is at
 * that moment, SMFIR_CHGHEADER counts the fields of a name as they are then
 * (its own additions included), and changing an occurrence that does not
 * exist adds the field at the end (smfi_chgheader), or does nothing when it
 * would delete. A check's header edits instead all refer to the section as
 * stored, whatever their order. So the changes are played on a model of the
 * section, and the edits are read off the end result: each stored field kept,
 * changed or deleted, and the new fields inserted before the stored field
 * they end up above, in their final order.
 *
 * Values: a filter that negotiated SMFIP_HDR_LEADSPC writes the value with
 * its leading white space (OpenDKIM sends " v=1; …"); one leading space is
 * dropped here since a HeaderField's value has none. Folds stay as the filter
 * wrote them — OpenDKIM folds with bare LF (Sendmail's internal form) — and
 * become CRLF where the field is written (mail/header-field.ts formatField),
 * which also keeps a value from starting a field or ending the section.
 */

export interface Changes {
  readonly headerEdits: HeaderEdit[];
  readonly add: string[];
  readonly remove: string[];
  /** What was dropped and why, for the log. */
  readonly dropped: string[];
}

/** A field of the section being changed: a stored one (its index in the section) or one the filter added. */
interface Entry {
  readonly name: string;
  readonly stored: number | null;
  /** The new value, when added or changed. */
  value?: string;
}

export function applyModifications(stored: readonly string[], modifications: readonly Modification[], leadingSpace: boolean): Changes {
  const section: Entry[] = stored.map((name, i) => ({ name, stored: i }));
  const deleted = new Set<number>();
  const changes: Changes = { headerEdits: [], add: [], remove: [], dropped: [] };
  for (const m of modifications) {
    switch (m.kind) {
      case "addHeader":
        section.push({ name: m.name, stored: null, value: headerValue(m.value, leadingSpace) });
        break;
      case "insertHeader":
        section.splice(Math.min(m.index, section.length), 0, { name: m.name, stored: null, value: headerValue(m.value, leadingSpace) });
        break;
      case "changeHeader": {
        // Sendmail reads index 0 as 1 (Postfix follows it).
        const at = occurrence(section, m.name.toLowerCase(), Math.max(m.index, 1));
        if (at === -1) {
          if (m.value.length > 0) section.push({ name: m.name, stored: null, value: headerValue(m.value, leadingSpace) });
        } else if (m.value.length === 0) {
          const [gone] = section.splice(at, 1);
          if (gone.stored !== null) deleted.add(gone.stored);
        } else {
          section[at].value = headerValue(m.value, leadingSpace);
        }
        break;
      }
      case "addRecipient":
      case "deleteRecipient": {
        const address = recipient(m.address);
        if (address === undefined) changes.dropped.push(`${m.kind === "addRecipient" ? "add" : "delete"} recipient "${m.address.slice(0, 100)}": not an address`);
        else (m.kind === "addRecipient" ? changes.add : changes.remove).push(address);
        break;
      }
    }
  }
  changes.headerEdits.push(...editsOf(stored, section, deleted));
  return changes;
}

/** The edits that turn the stored section into `section`. */
function editsOf(stored: readonly string[], section: readonly Entry[], deleted: ReadonlySet<number>): HeaderEdit[] {
  const edits: HeaderEdit[] = [];
  // An added field goes before the next stored field still below it (deleted ones included: their place remains).
  const below = new Array<number>(section.length);
  let next = stored.length;
  for (let i = section.length - 1; i >= 0; i--) {
    const s = section[i].stored;
    if (s !== null) next = s;
    below[i] = next;
  }
  const ordinal = ordinals(stored);
  for (const s of deleted) edits.push({ op: "delete", name: stored[s], index: ordinal[s] });
  section.forEach((e, i) => {
    if (e.stored === null) edits.push({ op: "insert", position: below[i], field: { name: e.name, value: e.value ?? "" } });
    else if (e.value !== undefined) edits.push({ op: "change", name: stored[e.stored], index: ordinal[e.stored], value: e.value });
  });
  return edits;
}

/** For each stored field, its number among the fields of its name (from 1). */
function ordinals(stored: readonly string[]): number[] {
  const seen = new Map<string, number>();
  return stored.map((name) => {
    const n = (seen.get(name.toLowerCase()) ?? 0) + 1;
    seen.set(name.toLowerCase(), n);
    return n;
  });
}

/** Where the `index`-th field named `name` (lower case) sits, or -1. */
function occurrence(section: readonly Entry[], name: string, index: number): number {
  let seen = 0;
  for (let i = 0; i < section.length; i++) {
    if (section[i].name.toLowerCase() === name && ++seen === index) return i;
  }
  return -1;
}

/** A value as the filter sent it, less the one leading space when it negotiated SMFIP_HDR_LEADSPC; folds are made CRLF where the field is written (formatField). */
export function headerValue(raw: Buffer, leadingSpace: boolean): string {
  const v = raw.toString("utf8");
  return leadingSpace && v.startsWith(" ") ? v.slice(1) : v;
}

/** "<a@example.com>" or "a@example.com" as an address string; undefined when it is not one. */
function recipient(text: string): string | undefined {
  const t = text.trim();
  const r = parsePath(t.startsWith("<") ? t : `<${t}>`, { allowUtf8: true, allowNull: false });
  if (!r.ok || r.mailbox === null || r.rest.trim() !== "") return undefined;
  return formatMailbox(r.mailbox);
}
