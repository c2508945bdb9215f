import type { HeaderEdit, HeaderField, HeaderFields } from "./check.ts";

/**
 * The Authentication-Results header field (RFC 8601): one per hop, naming
 * this server by its authserv-id, carrying the results ("resinfo") every
 * check found — SPF, DKIM, DMARC, ARC … — and never trusted when it arrives
 * from outside claiming to be ours.
 */

export const AUTHENTICATION_RESULTS = "Authentication-Results";

/**
 * RFC 8601 §2.2: `authserv-id; resinfo; resinfo …`, one resinfo per folded
 * line. Null when no check reported anything (Petrel adds no "none" field).
 * Fragments come from checks: line breaks and other control characters in
 * them are turned into spaces, so a fragment can never start another field.
 */
export function authenticationResults(authservId: string, fragments: readonly string[]): HeaderField | null {
  const clean = fragments.map((f) => f.replace(/[\x00-\x1f\x7f]+/g, " ").trim().replace(/;+$/, "").trim()).filter((f) => f !== "");
  if (clean.length === 0) return null;
  return { name: AUTHENTICATION_RESULTS, value: `${authservId};\r\n\t${clean.join(";\r\n\t")}` };
}

/**
 * RFC 8601 §5: a field that claims our authserv-id but reached us from
 * outside is forged (or stale); it is deleted, so no reader downstream
 * mistakes it for ours. Returns the edits for the stored header section.
 */
export function forgedResults(authservId: string, header: HeaderFields): HeaderEdit[] {
  const edits: HeaderEdit[] = [];
  const ours = authservId.toLowerCase();
  let index = 0;
  for (const f of header) {
    if (f.name.toLowerCase() !== "authentication-results") continue;
    index++;
    if (authservIdOf(f.value)?.toLowerCase() === ours) edits.push({ op: "delete", name: f.name, index });
  }
  return edits;
}

/** The authserv-id of an Authentication-Results value (RFC 8601 §2.2: CFWS, then a token or quoted-string), or null. */
export function authservIdOf(value: string): string | null {
  let i = skipCfws(value, 0);
  if (i >= value.length) return null;
  if (value[i] === '"') {
    let out = "";
    for (i++; i < value.length && value[i] !== '"'; i++) {
      if (value[i] === "\\") i++;
      out += value[i] ?? "";
    }
    return i < value.length ? out : null;
  }
  const m = /^[^\s;()"]+/.exec(value.slice(i));
  return m ? m[0] : null;
}

/** Past white space, folds and (nested) comments (RFC 5322 §3.2.2). */
function skipCfws(s: string, i: number): number {
  for (;;) {
    while (i < s.length && /\s/.test(s[i])) i++;
    if (s[i] !== "(") return i;
    let depth = 0;
    for (; i < s.length; i++) {
      if (s[i] === "\\") i++;
      else if (s[i] === "(") depth++;
      else if (s[i] === ")" && --depth === 0) {
        i++;
        break;
      }
    }
  }
}
