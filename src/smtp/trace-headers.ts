/**
 * Header fields an MTA writes: the Received trace field (RFC 5321 §4.4,
 * RFC 5322 §3.6.7) and the Message-ID and Date a submission server adds
 * when they are missing (RFC 6409 §8).
 */

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** RFC 5322 §3.3 date-time, in UTC ("+0000"). */
export function rfc5322Date(date: Date): string {
  return `${DAYS[date.getUTCDay()]}, ${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ` +
    `${pad2(date.getUTCHours())}:${pad2(date.getUTCMinutes())}:${pad2(date.getUTCSeconds())} +0000`;
}

export interface ReceivedFields {
  /** The HELO/EHLO argument. */
  readonly helo: string;
  readonly clientAddress: string;
  /** Verified reverse DNS name, if any. */
  readonly clientHostname?: string;
  /** Our host name. */
  readonly by: string;
  /** RFC 3848 / RFC 6531 §4.3 protocol keyword, e.g. "ESMTPSA" or "UTF8SMTPS". */
  readonly protocol: string;
  readonly queueId: string;
  readonly tls?: { readonly version: string; readonly cipher: string };
  /** Named in the "for" clause only when there is exactly one recipient (privacy, as Postfix). */
  readonly recipient?: string;
  readonly date: Date;
}

/**
 * The Received field, folded onto several lines (RFC 5322 §2.2.3) in the
 * shape Postfix uses, so log parsers and people recognise it.
 */
export function receivedHeader(f: ReceivedFields): string {
  const literal = f.clientAddress.includes(":") ? `IPv6:${f.clientAddress}` : f.clientAddress;
  const from = `from ${sanitize(f.helo)} (${f.clientHostname ? sanitize(f.clientHostname) + " " : ""}[${literal}])`;
  let out = `Received: ${from}\r\n`;
  if (f.tls) out += `\t(using ${sanitize(f.tls.version)} with cipher ${sanitize(f.tls.cipher)})\r\n`;
  out += `\tby ${f.by} (Petrel) with ${f.protocol} id ${f.queueId}`;
  if (f.recipient !== undefined) out += `\r\n\tfor <${sanitize(f.recipient)}>`;
  out += `; ${rfc5322Date(f.date)}\r\n`;
  return out;
}

/**
 * RFC 3848 (and RFC 6531 §4.3 for SMTPUTF8) "with" keyword: SMTP for HELO
 * sessions, ESMTP plus S for TLS and A for authentication.
 */
export function protocolKeyword(o: { esmtp: boolean; tls: boolean; authenticated: boolean; smtputf8: boolean }): string {
  if (!o.esmtp) return "SMTP";
  return (o.smtputf8 ? "UTF8SMTP" : "ESMTP") + (o.tls ? "S" : "") + (o.authenticated ? "A" : "");
}

/** A Message-ID that is unique because the queue id is (RFC 5322 §3.6.4). */
export function messageId(queueId: string, hostname: string): string {
  return `<${queueId}@${hostname}>`;
}

/**
 * Keep client-supplied text from breaking the header: no CR, LF, other
 * control characters (NUL, ESC … are not allowed in a header field, RFC 5322
 * §2.2), or parentheses nesting tricks.
 */
function sanitize(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, " ").replace(/[()<>\\]/g, "?").slice(0, 255);
}
