/**
 * SMTP paths and mailboxes (RFC 5321 §4.1.2, with RFC 6531 §3.3 for
 * SMTPUTF8):
 *
 *   Reverse-path = Path / "<>"
 *   Forward-path = Path
 *   Path         = "<" [ A-d-l ":" ] Mailbox ">"
 *   A-d-l        = At-domain *( "," At-domain )     ; source route, ignored
 *   At-domain    = "@" Domain
 *   Mailbox      = Local-part "@" ( Domain / address-literal )
 *   Local-part   = Dot-string / Quoted-string
 *
 * Choices where the RFCs leave room (documented so the engine can rely on them):
 * - Exactly one space is tolerated before "<" ("MAIL FROM: <a@b>", as Postfix
 *   does); anything else before "<", or a bare address, is refused.
 * - After ">" there must be nothing or a space (the parameters follow).
 * - "<Postmaster>" without a domain (any case) is accepted only for a
 *   forward-path (allowNull false) and yields localPart "postmaster", domain "".
 * - Source-route domains must be syntactically valid Domains; they are then
 *   discarded (RFC 5321 Appendix C).
 * - An empty local part ("<\"\"@b>") is refused although the grammar allows
 *   it: RFC 5321 §4.1.2 discourages it and nothing downstream can deliver it.
 * - The 64-octet local-part limit is measured on the local part as written
 *   (quotes and backslashes included); the 255-octet domain limit on the
 *   domain as written; the 256-octet path limit from "<" to ">" inclusive.
 * - Only IPv4 and "IPv6:" address literals are accepted: no General-address-
 *   literal tag is standardised. Literals are normalised to "[1.2.3.4]" and
 *   "[IPv6:<lower-case hex>]". IPv6 follows RFC 5321 strictly ("::" stands for
 *   at least two groups).
 * - With SMTPUTF8, non-ASCII characters must be well-formed Unicode and not
 *   C1 controls (U+0080..U+009F) nor Unicode separators (U+00A0, U+2028, ...),
 *   even inside quotes; U-labels in domains must be letters, marks,
 *   digits or "-". Domains are lower-cased with toLowerCase() (no NFC).
 *
 * Pure: no I/O.
 */
import type { Mailbox } from "../mail/envelope.ts";

export type PathResult =
  | { ok: true; mailbox: Mailbox | null /* null = <> */; rest: string /* text after '>', e.g. " SIZE=100" */ }
  | { ok: false; reason: string };

const MAX_LOCAL_PART = 64;
const MAX_DOMAIN = 255;
const MAX_PATH = 256;
const MAX_LABEL = 63;

const ATEXT_ASCII = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]$/;
const NON_ASCII = /[^\x00-\x7f]/;

/** UTF-8 length in octets (RFC 5321 §4.5.3.1 limits count octets), without encoding. */
function octets(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

function fail(reason: string): PathResult {
  return { ok: false, reason: `malformed address: ${reason}` };
}

function isAtextChar(ch: string, allowUtf8: boolean): boolean {
  if (ATEXT_ASCII.test(ch)) return true;
  return allowUtf8 && ch.charCodeAt(0) >= 0x80 && isAcceptableNonAscii(ch);
}

/** Non-ASCII character acceptable under SMTPUTF8: not a C1 control, not Unicode white space, not a lone surrogate. */
function isAcceptableNonAscii(ch: string): boolean {
  return !/[\p{Cc}\p{Z}\p{Cs}]/u.test(ch);
}

function isDotString(s: string, allowUtf8: boolean): boolean {
  if (s.length === 0) return false;
  for (const atom of s.split(".")) {
    if (atom.length === 0) return false;
    for (const ch of atom) if (!isAtextChar(ch, allowUtf8)) return false;
  }
  return true;
}

function isLabel(label: string, allowUtf8: boolean): boolean {
  if (label.length === 0 || octets(label) > MAX_LABEL) return false;
  if (!NON_ASCII.test(label)) {
    // Let-dig [Ldh-str]
    return /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/.test(label);
  }
  if (!allowUtf8) return false;
  // U-label (RFC 6531 §3.3 sub-domain =/ U-label), checked loosely.
  if (!label.isWellFormed()) return false;
  if (label.startsWith("-") || label.endsWith("-")) return false;
  return /^[\p{L}\p{M}\p{N}-]+$/u.test(label);
}

function isDomainName(d: string, allowUtf8: boolean): boolean {
  if (d.length === 0 || octets(d) > MAX_DOMAIN) return false;
  return d.split(".").every((l) => isLabel(l, allowUtf8));
}

function isIPv4(a: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  return m !== null && m.slice(1).every((n) => Number(n) <= 255);
}

function hexGroups(p: string, full: number): boolean {
  const isGroup = (g: string): boolean => /^[0-9A-Fa-f]{1,4}$/.test(g);
  const idx = p.indexOf("::");
  if (idx === -1) {
    const groups = p.split(":");
    return groups.length === full && groups.every(isGroup);
  }
  if (p.indexOf("::", idx + 1) !== -1) return false;
  const left = p.slice(0, idx);
  const right = p.slice(idx + 2);
  const lg = left === "" ? [] : left.split(":");
  const rg = right === "" ? [] : right.split(":");
  // RFC 5321 IPv6-comp: "::" represents at least 2 groups.
  return lg.every(isGroup) && rg.every(isGroup) && lg.length + rg.length <= full - 2;
}

/** RFC 5321 §4.1.3 IPv6-addr (full, comp, v4-full, v4-comp). */
function isIPv6(a: string): boolean {
  if (a.includes(".")) {
    const m = /^(.*:)([0-9.]+)$/.exec(a);
    if (!m || !isIPv4(m[2])) return false;
    const head = m[1].endsWith("::") ? m[1] : m[1].slice(0, -1);
    return hexGroups(head, 6);
  }
  return hexGroups(a, 8);
}

/** Validate an address literal "[...]"; returns its normalised form or null. */
function normaliseAddressLiteral(lit: string): string | null {
  if (!lit.startsWith("[") || !lit.endsWith("]")) return null;
  const inner = lit.slice(1, -1);
  if (isIPv4(inner)) return `[${inner}]`;
  if (/^ipv6:/i.test(inner)) {
    const addr = inner.slice(5);
    return isIPv6(addr) ? `[IPv6:${addr.toLowerCase()}]` : null;
  }
  return null;
}

/**
 * True for an RFC 5321 Domain (dot-separated LDH labels of at most 63
 * octets, 255 octets in all; U-labels too when allowUtf8) or an
 * address-literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") — i.e. what may
 * follow "@" in a mailbox, and what EHLO may carry.
 */
export function isValidDomain(d: string, allowUtf8: boolean): boolean {
  if (d.startsWith("[")) return normaliseAddressLiteral(d) !== null;
  return isDomainName(d, allowUtf8);
}

/** "local@domain", quoting the local part when it is not a Dot-string; "postmaster" alone when domain is "". */
export function formatMailbox(m: Mailbox): string {
  const local = isDotString(m.localPart, true)
    ? m.localPart
    : `"${m.localPart.replace(/["\\]/g, "\\$&")}"`;
  return m.domain === "" ? local : `${local}@${m.domain}`;
}

/** Parse a Quoted-string starting at s[0] === '"'. Returns decoded text and the index after the closing quote. */
function parseQuoted(s: string, allowUtf8: boolean): { value: string; end: number } | { error: string } {
  let value = "";
  for (let i = 1; i < s.length; i++) {
    const ch = s[i];
    const c = ch.charCodeAt(0);
    if (ch === '"') return { value, end: i + 1 };
    if (ch === "\\") {
      const next = s[i + 1];
      if (next === undefined) break;
      const n = next.charCodeAt(0);
      if (n < 32 || n > 126) return { error: "invalid quoted-pair in local part" };
      value += next;
      i++;
      continue;
    }
    if (c >= 32 && c <= 126) {
      value += ch;
    } else if (c >= 0x80 && allowUtf8) {
      value += ch; // surrogate pairs pass through code unit by code unit; well-formedness checked earlier
    } else {
      return { error: "invalid character in quoted local part" };
    }
  }
  return { error: "unterminated quoted local part" };
}

/**
 * Parse "<...>" at the start of `text` (the text after "FROM:" / "TO:").
 * allowUtf8 = SMTPUTF8 in effect. allowNull = this is a reverse-path ("<>"
 * allowed; "<Postmaster>" without domain is not).
 */
export function parsePath(text: string, options: { allowUtf8: boolean; allowNull: boolean }): PathResult {
  let s = text;
  if (s.startsWith(" ")) s = s.slice(1); // "MAIL FROM: <a@b>" (Postfix-compatible, one space only)
  if (!s.startsWith("<")) return fail("address must be enclosed in '<' and '>'");

  // Find the closing '>' outside quotes; refuse controls and stray spaces on the way.
  let end = -1;
  let inQuote = false;
  for (let i = 1; i < s.length; i++) {
    const ch = s[i];
    const c = ch.charCodeAt(0);
    if (c < 32 || c === 127) return fail("control character in address");
    if (inQuote) {
      if (ch === "\\") {
        const n = s.charCodeAt(i + 1); // NaN at end of text: handled as unterminated
        if (n < 32 || n === 127) return fail("control character in address");
        i++;
      } else if (ch === '"') inQuote = false;
      continue;
    }
    if (ch === '"') inQuote = true;
    else if (ch === ">") {
      end = i;
      break;
    } else if (ch === "<") return fail("unexpected '<'");
    else if (ch === " ") return fail("space outside quotes");
  }
  if (end < 0) return fail(inQuote ? "unterminated quoted local part" : "missing '>'");

  const inner = s.slice(1, end);
  const rest = s.slice(end + 1);
  if (rest !== "" && !rest.startsWith(" ")) return fail("unexpected text after '>'");
  if (octets(s.slice(0, end + 1)) > MAX_PATH) {
    return { ok: false, reason: `path too long: over ${MAX_PATH} octets` };
  }
  if (NON_ASCII.test(inner)) {
    if (!options.allowUtf8) {
      return { ok: false, reason: "non-ASCII address requires SMTPUTF8" };
    }
    if (!inner.isWellFormed()) return fail("invalid UTF-8");
    for (const ch of inner) {
      if (ch.charCodeAt(0) >= 0x80 && !isAcceptableNonAscii(ch)) return fail("control or space character in address");
    }
  }

  if (inner === "") {
    return options.allowNull ? { ok: true, mailbox: null, rest } : fail("null path <> not allowed here");
  }

  // Source route: "@a,@b:" — validated, then ignored (RFC 5321 Appendix C).
  let mbox = inner;
  if (mbox.startsWith("@")) {
    const colon = mbox.indexOf(":");
    if (colon < 0) return fail("source route without ':'");
    const route = mbox.slice(0, colon).split(",");
    for (const hop of route) {
      if (!hop.startsWith("@") || !isDomainName(hop.slice(1), options.allowUtf8)) {
        return fail("invalid source route");
      }
    }
    mbox = mbox.slice(colon + 1);
    if (mbox === "") return fail("source route without mailbox");
  }

  // Local part.
  let localPart: string;
  let localRaw: string;
  let after: string;
  if (mbox.startsWith('"')) {
    const q = parseQuoted(mbox, options.allowUtf8);
    if ("error" in q) return fail(q.error);
    localPart = q.value;
    localRaw = mbox.slice(0, q.end);
    after = mbox.slice(q.end);
  } else {
    const at = mbox.indexOf("@");
    localRaw = at < 0 ? mbox : mbox.slice(0, at);
    after = at < 0 ? "" : mbox.slice(at);
    if (!isDotString(localRaw, options.allowUtf8)) return fail("invalid local part");
    localPart = localRaw;
  }

  if (after === "") {
    if (!options.allowNull && !mbox.startsWith('"') && localPart.toLowerCase() === "postmaster" && inner === mbox) {
      return { ok: true, mailbox: { localPart: "postmaster", domain: "" }, rest };
    }
    return fail("missing '@domain'");
  }
  if (!after.startsWith("@")) return fail("invalid local part");
  if (localPart === "") return fail("empty local part");
  if (octets(localRaw) > MAX_LOCAL_PART) {
    return { ok: false, reason: `local part too long: over ${MAX_LOCAL_PART} octets` };
  }

  // Domain or address literal.
  const domainRaw = after.slice(1);
  if (domainRaw === "") return fail("missing domain");
  if (octets(domainRaw) > MAX_DOMAIN) {
    return { ok: false, reason: `domain too long: over ${MAX_DOMAIN} octets` };
  }
  let domain: string;
  if (domainRaw.startsWith("[")) {
    const lit = normaliseAddressLiteral(domainRaw);
    if (lit === null) return fail("invalid address literal");
    domain = lit;
  } else {
    if (!isDomainName(domainRaw, options.allowUtf8)) return fail("invalid domain");
    domain = domainRaw.toLowerCase();
    // Lower-casing can lengthen a U-label ("İ" is 2 octets, "i̇" 3): the
    // limits must hold for the domain we keep, or it could not be sent on.
    if (domain !== domainRaw) {
      if (octets(domain) > MAX_DOMAIN) return { ok: false, reason: `domain too long: over ${MAX_DOMAIN} octets` };
      if (!isDomainName(domain, options.allowUtf8)) return fail("invalid domain");
      if (octets(s.slice(0, end + 1)) - octets(domainRaw) + octets(domain) > MAX_PATH) {
        return { ok: false, reason: `path too long: over ${MAX_PATH} octets` };
      }
    }
  }
  return { ok: true, mailbox: { localPart, domain }, rest };
}
