import type { HeaderEdit } from "../check.ts";
import { formatMailbox, parsePath } from "../../smtp/address.ts";
import type { Modification } from "./answers.ts";

/**
 * Turns a filter's end-of-message changes into a check's header edits and
 * recipient changes.
 *
 * Header edits apply in order, each to the header section as the previous
 * ones left it, starting from the section the filter was sent; positions
 * and indexes are computed here against a model of that section, so the
 * edits are plain (Sendmail's quirks resolved): SMFIR_ADDHEADER appends at
 * the end of the section, SMFIR_INSHEADER index 0 is its top, and
 * SMFIR_CHGHEADER of an occurrence that does not exist adds the field
 * (smfi_chgheader), or does nothing when it would delete.
 *
 * Values: a filter that negotiated SMFIP_HDR_LEADSPC writes the value with
 * its leading white space (OpenDKIM sends " v=1; …"); one leading space is
 * dropped here since a HeaderField's value has none. Folds come back as the
 * filter wrote them — OpenDKIM folds with bare LF (Sendmail's internal form)
 * — and are written with CRLF (RFC 5322 §2.2.3); a continuation line must
 * begin with white space and an empty line would end the header section, so
 * neither can be smuggled into the message.
 */

export interface Changes {
  readonly headerEdits: HeaderEdit[];
  readonly add: string[];
  readonly remove: string[];
  /** What was dropped and why, for the log. */
  readonly dropped: string[];
}

export function applyModifications(received: readonly string[], modifications: readonly Modification[], leadingSpace: boolean): Changes {
  const names = received.map((n) => n.toLowerCase());
  const changes: Changes = { headerEdits: [], add: [], remove: [], dropped: [] };
  const insert = (position: number, name: string, value: string) => {
    const at = Math.min(Math.max(position, 0), names.length);
    names.splice(at, 0, name.toLowerCase());
    changes.headerEdits.push({ op: "insert", position: at, field: { name, value } });
  };
  for (const m of modifications) {
    switch (m.kind) {
      case "addHeader":
        insert(names.length, m.name, headerValue(m.value, leadingSpace));
        break;
      case "insertHeader":
        insert(m.index, m.name, headerValue(m.value, leadingSpace));
        break;
      case "changeHeader": {
        // Sendmail reads index 0 as 1 (Postfix follows it).
        const index = Math.max(m.index, 1);
        const at = occurrence(names, m.name.toLowerCase(), index);
        const value = headerValue(m.value, leadingSpace);
        if (at === -1) {
          if (m.value.length > 0) insert(names.length, m.name, value);
        } else if (m.value.length === 0) {
          names.splice(at, 1);
          changes.headerEdits.push({ op: "delete", name: m.name, index });
        } else {
          changes.headerEdits.push({ op: "change", name: m.name, index, value });
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
  return changes;
}

/** Where the `index`-th field named `name` (lower case) sits, or -1. */
function occurrence(names: readonly string[], name: string, index: number): number {
  let seen = 0;
  for (let i = 0; i < names.length; i++) {
    if (names[i] === name && ++seen === index) return i;
  }
  return -1;
}

export function headerValue(raw: Buffer, leadingSpace: boolean): string {
  let v = raw.toString("utf8");
  if (leadingSpace && v.startsWith(" ")) v = v.slice(1);
  const lines = v.split(/\r\n|\r|\n/);
  const out = [lines[0]];
  for (const line of lines.slice(1)) {
    if (line.trim() === "") continue;
    out.push(line.startsWith(" ") || line.startsWith("\t") ? line : `\t${line}`);
  }
  return out.join("\r\n");
}

/** "<a@example.com>" or "a@example.com" as an address string; undefined when it is not one. */
function recipient(text: string): string | undefined {
  const t = text.trim();
  const r = parsePath(t.startsWith("<") ? t : `<${t}>`, { allowUtf8: true, allowNull: false });
  if (!r.ok || r.mailbox === null || r.rest.trim() !== "") return undefined;
  return formatMailbox(r.mailbox);
}
