/**
 * The machine-readable part of a DSN: the message/delivery-status body
 * (RFC 3464 §2) or its RFC 6533 message/global-delivery-status twin, and the
 * header-field helpers it needs (sanitising peer-supplied text, folding long
 * values so no line passes 998 octets, RFC 5322 §2.1.1 / §2.2.3).
 *
 * Pure: strings in, string out.
 */
import { rfc5322Date } from "../smtp/trace-headers.ts";
import type { DsnAction, DsnRecipient } from "../queue/ports.ts";


/** One recipient's entry in a DSN (the shape `bounce.ts` exports as FailedRecipient). */
export interface DsnMessageFields {
  readonly reportingMta: string;
  readonly queueId: string;
  readonly sender: string;
  readonly envid?: string;
  readonly arrivalDate: Date;
  /** RFC 6533: UTF-8 allowed in values, utf-8 address type for non-ASCII addresses. */
  readonly global: boolean;
}

/** Longest diagnostic kept (characters); remote replies past this are cut with "...". */
export const MAX_DIAGNOSTIC = 2000;
/** Preferred line length when folding (RFC 5322 §2.1.1 SHOULD 78). */
const SOFT_LIMIT = 78;
/** Hard line length without CRLF (RFC 5322 §2.1.1 MUST 998). */
export const HARD_LIMIT = 998;

const NON_ASCII = /[^\x00-\x7f]/;

export function hasNonAscii(s: string): boolean {
  return NON_ASCII.test(s);
}

/**
 * Make peer- or user-supplied text safe for one header value: control
 * characters (CR, LF, TAB, ...) and runs of spaces become one space, and
 * without `allowUtf8` every non-ASCII character becomes "?".
 */
export function cleanText(s: string, allowUtf8: boolean, max = Infinity): string {
  let out = s.replace(/[\x00-\x20\x7f\u0080-\u009f\u2028\u2029]+/g, " ").trim();
  if (!allowUtf8) out = out.replace(/[^\x00-\x7f]/g, "?");
  if (out.length > max) out = out.slice(0, max - 3).trimEnd() + "...";
  return out;
}

/** Valid RFC 3463 status code, else the generic one for the action. */
export function statusFor(action: DsnAction, status: string): string {
  if (/^[245]\.\d{1,3}\.\d{1,3}$/.test(status)) return status;
  return action === "failed" ? "5.0.0" : action === "delayed" ? "4.0.0" : "2.0.0";
}

/**
 * "Name: value" folded at spaces to about 78 columns, never past 998 octets:
 * a single word longer than that is split (the only case where folding adds
 * whitespace that was not there). Ends with CRLF.
 */
export function foldField(name: string, value: string): string {
  const lines: string[] = [];
  let line = `${name}:`;
  let fresh = true; // no word on this line yet
  for (const word of value.split(" ")) {
    let rest = " " + word;
    if (!fresh && bytes(line) + bytes(rest) > SOFT_LIMIT) {
      lines.push(line);
      line = "";
    } else if (!fresh) {
      line += rest;
      continue;
    }
    // A word too long for any line is cut into pieces that fit.
    while (bytes(line) + bytes(rest) > HARD_LIMIT) {
      const cut = cutAtBytes(rest, HARD_LIMIT - bytes(line));
      lines.push(line + rest.slice(0, cut));
      rest = " " + rest.slice(cut);
      line = "";
    }
    line += rest;
    fresh = false;
  }
  lines.push(line);
  return lines.join("\r\n") + "\r\n";
}

function bytes(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** The largest prefix length (UTF-16 index) of `s` whose UTF-8 size is ≤ max, not splitting a code point. */
export function cutAtBytes(s: string, max: number): number {
  let used = 0;
  let i = 0;
  while (i < s.length) {
    const cp = s.codePointAt(i)!;
    const len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (used + len > max) break;
    used += len;
    i += cp >= 0x10000 ? 2 : 1;
  }
  return i;
}

/** RFC 3464 address-type; generic-address — "utf-8" (RFC 6533 §3) only for non-ASCII in a global DSN. */
export function typedAddress(address: string, global: boolean): string {
  const a = cleanText(address, global);
  return `${global && hasNonAscii(a) ? "utf-8" : "rfc822"}; ${a}`;
}

/**
 * The ORCPT as kept in the envelope ("type;decoded-address") → the value of
 * Original-Recipient. A non-ASCII address is labelled utf-8 (RFC 6533 §3).
 */
export function originalRecipient(orcpt: string, global: boolean): string {
  const semi = orcpt.indexOf(";");
  let type = semi > 0 ? orcpt.slice(0, semi).trim().toLowerCase() : "rfc822";
  const addr = cleanText(semi >= 0 ? orcpt.slice(semi + 1) : orcpt, global);
  if (global && hasNonAscii(addr)) type = "utf-8";
  if (!/^[a-z0-9-]+$/.test(type)) type = "rfc822";
  return `${type};${addr}`;
}

/**
 * RFC 3464 §2.3.6 Diagnostic-Code: "smtp" when the text is an SMTP reply
 * (three-digit code first), else our own "x-petrel" type for local errors
 * that never had an SMTP reply (a full mailbox, a missing user).
 */
export function diagnosticCode(diagnostic: string, global: boolean): string {
  const text = cleanText(diagnostic, global, MAX_DIAGNOSTIC);
  return `${/^[2-5]\d\d(?:[ -]|$)/.test(text) ? "smtp" : "x-petrel"}; ${text}`;
}

/** The body of the message/(global-)delivery-status part, CRLF line ends. */
export function deliveryStatusBody(m: DsnMessageFields, recipients: readonly DsnRecipient[]): string {
  const g = m.global;
  let out = foldField("Reporting-MTA", `dns; ${cleanText(m.reportingMta, g)}`);
  out += foldField("X-Petrel-Queue-ID", cleanText(m.queueId, false));
  out += foldField("X-Petrel-Sender", typedAddress(m.sender, g));
  if (m.envid !== undefined && m.envid !== "") out += foldField("Original-Envelope-Id", cleanText(m.envid, g));
  out += foldField("Arrival-Date", rfc5322Date(m.arrivalDate));
  for (const r of recipients) {
    out += "\r\n";
    if (r.orcpt !== undefined && r.orcpt !== "") out += foldField("Original-Recipient", originalRecipient(r.orcpt, g));
    out += foldField("Final-Recipient", typedAddress(r.address, g));
    out += foldField("Action", r.action);
    out += foldField("Status", statusFor(r.action, r.status));
    if (r.remoteMta !== undefined && r.remoteMta !== "") out += foldField("Remote-MTA", `dns; ${cleanText(r.remoteMta, g)}`);
    if (r.diagnostic !== undefined && cleanText(r.diagnostic, g) !== "") out += foldField("Diagnostic-Code", diagnosticCode(r.diagnostic, g));
    if (r.lastAttempt !== undefined) out += foldField("Last-Attempt-Date", rfc5322Date(r.lastAttempt));
    if (r.action === "delayed" && r.willRetryUntil !== undefined) out += foldField("Will-Retry-Until", rfc5322Date(r.willRetryUntil));
  }
  return out;
}
