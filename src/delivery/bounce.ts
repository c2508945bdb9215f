/**
 * The bounce agent's composer: delivery status notifications (DSNs) back to
 * the sender of a message, per RFC 3464 (the delivery-status format),
 * RFC 3461 (what the sender asked for: NOTIFY, RET, ENVID, ORCPT), RFC 6522
 * (the multipart/report container), RFC 6533 (the "global" types for
 * SMTPUTF8 mail) and RFC 3834 (Auto-Submitted).
 *
 * The message looks like this (CRLF line ends, no line over 998 octets):
 *
 *   From: Mail Delivery System <MAILER-DAEMON@host>
 *   To: <sender>   Subject, Date, Message-ID, Auto-Submitted, MIME-Version
 *   Content-Type: multipart/report; report-type=delivery-status; boundary="..."
 *   ├─ text/plain                       what happened, in plain words
 *   ├─ message/delivery-status          Reporting-MTA, Arrival-Date, … / per recipient:
 *   │                                   Original-Recipient, Final-Recipient, Action, Status, …
 *   └─ message/rfc822                   the original (or text/rfc822-headers: its headers)
 *
 * Pure: no I/O but reading the original message stream it is given. Time and
 * randomness (for the boundary and Message-ID) come in with the input.
 */
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import type { Envelope, Recipient } from "../mail/envelope.ts";
import { rfc5322Date } from "../smtp/trace-headers.ts";
import { cleanText, deliveryStatusBody, foldField, hasNonAscii } from "./dsn-fields.ts";
import type { DsnAction, DsnRecipient } from "../queue/ports.ts";
import { readOriginal, type ReturnedContent } from "./dsn-original.ts";
import { noticeText } from "./dsn-text.ts";

export interface DsnInput {
  readonly queueId: string;
  /** The ORIGINAL message's envelope. */
  readonly envelope: Envelope;
  readonly recipients: readonly DsnRecipient[];
  /** Our host name. */
  readonly reportingMta: string;
  readonly arrivalDate: Date;
  readonly now: Date;
  /** The spooled original (CRLF line ends); called at most once. */
  readonly originalMessage: () => Readable;
  /** Return at most this much of the full message; beyond it, headers only (and the text says so). Default 10 MiB. */
  readonly maxOriginalSize?: number;
  /** Randomness for the MIME boundary and Message-ID (tests inject it). Default node:crypto. */
  readonly randomBytes?: (size: number) => Buffer;
}

export interface ComposedDsn {
  /** The null reverse-path: a DSN is never itself bounced (RFC 3461 §6.1, RFC 5321 §4.5.5). */
  readonly mailFrom: "";
  /** The original sender. */
  readonly to: string;
  /** The whole message, CRLF line ends. */
  readonly message: Buffer;
  /** Some octet is ≥ 0x80: send with BODY=8BITMIME (or convert/refuse when the peer lacks it). */
  readonly needs8bit: boolean;
  /** The top-level header or the recipient address is non-ASCII: sending needs SMTPUTF8. */
  readonly smtputf8: boolean;
}

export const DEFAULT_MAX_ORIGINAL_SIZE = 10 * 1024 * 1024;

/**
 * Which recipients get a DSN at all (RFC 3461 §4.1). None when the original
 * had the null sender (bounces are never bounced). Per recipient, by its
 * NOTIFY: NEVER → none; absent → failed and delayed; otherwise FAILURE →
 * failed, DELAY → delayed, SUCCESS → delivered, relayed (§6.2.1 b) and
 * expanded. The ORCPT from the envelope is filled in when the candidate
 * lacks one. A candidate not in the envelope is treated as NOTIFY absent.
 */
export function dsnRecipients(envelope: Envelope, candidates: readonly DsnRecipient[]): DsnRecipient[] {
  if (envelope.mailFrom === "") return [];
  const out: DsnRecipient[] = [];
  for (const c of candidates) {
    const rcpt = findRecipient(envelope, c.address);
    if (!wanted(rcpt?.notify, c.action)) continue;
    out.push(c.orcpt === undefined && rcpt?.orcpt !== undefined ? { ...c, orcpt: rcpt.orcpt } : c);
  }
  return out;
}

function findRecipient(envelope: Envelope, address: string): Recipient | undefined {
  return envelope.recipients.find((r) => r.address === address) ??
    envelope.recipients.find((r) => r.address.toLowerCase() === address.toLowerCase());
}

function wanted(notify: readonly string[] | undefined, action: DsnAction): boolean {
  if (notify === undefined || notify.length === 0) return action === "failed" || action === "delayed";
  if (notify.includes("NEVER")) return false;
  switch (action) {
    case "failed": return notify.includes("FAILURE");
    case "delayed": return notify.includes("DELAY");
    default: return notify.includes("SUCCESS");
  }
}

/**
 * Build the DSN for `input.recipients` (filtered by `dsnRecipients`), or null
 * when none is due. One message covers every recipient given, whatever the
 * mix of actions; the subject follows the gravest (failed, then delayed).
 *
 * What is returned of the original (RFC 3461 §4.3): RET=HDRS → headers;
 * RET=FULL → the full message; RET absent → the full message when some
 * recipient failed — but never more than the headers of a REQUIRETLS message
 * (RFC 8689 §5), only the headers for a pure delay or success report
 * (it is not lost, so there is nothing to hand back). A full return that
 * is over `maxOriginalSize`, or has lines over 998 octets, falls back to the
 * headers and the text says why.
 */
export async function composeDsn(input: DsnInput): Promise<ComposedDsn | null> {
  const { envelope } = input;
  const recipients = dsnRecipients(envelope, input.recipients);
  if (recipients.length === 0) return null;

  const anyFailed = recipients.some((r) => r.action === "failed");
  const anyDelayed = recipients.some((r) => r.action === "delayed");
  const maxOriginalSize = input.maxOriginalSize ?? DEFAULT_MAX_ORIGINAL_SIZE;
  const random = input.randomBytes ?? cryptoRandomBytes;
  const global = envelope.smtputf8 || hasNonAscii(envelope.mailFrom) ||
    recipients.some((r) => hasNonAscii(r.address) || hasNonAscii(r.orcpt ?? ""));

  // RFC 8689 §5: the content of a REQUIRETLS message is never returned (RET=FULL is disregarded), as the report may travel without TLS.
  const want: "full" | "headers" =
    envelope.ret === "HDRS" || envelope.requireTls ? "headers" : envelope.ret === "FULL" || anyFailed ? "full" : "headers";
  const returned = await readOriginal(input.originalMessage(), want, maxOriginalSize);

  const text = Buffer.from(noticeText({
    reportingMta: input.reportingMta,
    recipients,
    returned,
    headersRequested: envelope.ret === "HDRS",
    maxOriginalSize,
    global,
  }), "utf8");
  const status = Buffer.from(deliveryStatusBody({
    reportingMta: input.reportingMta,
    queueId: input.queueId,
    sender: envelope.mailFrom,
    envid: envelope.envid,
    arrivalDate: input.arrivalDate,
    global,
  }, recipients), "utf8");

  const parts: Part[] = [
    {
      headers: [
        "Content-Description: Notification",
        `Content-Type: text/plain; charset=${is8bit(text) ? "utf-8" : "us-ascii"}`,
        ...cte(text),
      ],
      body: text,
    },
    {
      headers: [
        "Content-Description: Delivery report",
        `Content-Type: message/${global ? "global-delivery-status" : "delivery-status"}`,
        ...cte(status),
      ],
      body: status,
    },
    originalPart(returned, global, anyFailed),
  ];

  const boundary = chooseBoundary(parts, random);
  const body: Buffer[] = [Buffer.from("This is a MIME-encapsulated message.\r\n")];
  for (const p of parts) {
    body.push(Buffer.from(`\r\n--${boundary}\r\n${p.headers.map((h) => h + "\r\n").join("")}\r\n`), p.body);
  }
  body.push(Buffer.from(`\r\n--${boundary}--\r\n`));
  const bodyBuf = Buffer.concat(body);
  const body8bit = is8bit(bodyBuf);

  const subject = anyFailed
    ? "Undelivered Mail Returned to Sender"
    : anyDelayed ? "Delayed Mail (still being retried)" : "Successful Mail Delivery Report";
  const host = cleanText(input.reportingMta, global);
  const to = cleanText(envelope.mailFrom, global);
  let head = "";
  head += `From: Mail Delivery System <MAILER-DAEMON@${host}>\r\n`;
  head += foldField("To", `<${to}>`);
  head += `Subject: ${subject}\r\n`;
  head += `Date: ${rfc5322Date(input.now)}\r\n`;
  head += foldField("Message-ID", dsnMessageId(input, random));
  head += "Auto-Submitted: auto-replied\r\n";
  head += "MIME-Version: 1.0\r\n";
  head += `Content-Type: multipart/report; report-type=${global ? "global-delivery-status" : "delivery-status"};\r\n`;
  head += `\tboundary="${boundary}"\r\n`;
  if (body8bit) head += "Content-Transfer-Encoding: 8bit\r\n";
  head += "\r\n";

  const smtputf8 = hasNonAscii(head) || hasNonAscii(envelope.mailFrom);
  return {
    mailFrom: "",
    to: envelope.mailFrom,
    message: Buffer.concat([Buffer.from(head, "utf8"), bodyBuf]),
    needs8bit: body8bit || smtputf8,
    smtputf8,
  };
}

interface Part {
  readonly headers: readonly string[];
  readonly body: Buffer;
}

/** The third part: the original in full or its headers, typed per RFC 6522 / RFC 6533. */
function originalPart(returned: ReturnedContent, global: boolean, anyFailed: boolean): Part {
  const full = returned.kind === "full";
  const type = full
    ? (global ? "message/global" : "message/rfc822")
    : (global ? "message/global-headers" : "text/rfc822-headers");
  const what = anyFailed ? "Undelivered Message" : "Original Message";
  const headers = [`Content-Description: ${what}${full ? "" : " Headers"}`, `Content-Type: ${type}`];
  // message/* may only be 7bit, 8bit or binary (RFC 2046 §5.2.1): the original goes as it is.
  if (is8bit(returned.content)) headers.push("Content-Transfer-Encoding: 8bit");
  return { headers, body: returned.content };
}

function cte(body: Buffer): string[] {
  return is8bit(body) ? ["Content-Transfer-Encoding: 8bit"] : [];
}

function is8bit(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] >= 0x80) return true;
  return false;
}

/**
 * A random boundary (RFC 2046 §5.1.1: ≤ 70 characters) that occurs nowhere
 * in any part, so no content line can be mistaken for a delimiter.
 */
export function chooseBoundary(parts: readonly { readonly body: Buffer }[], random: (size: number) => Buffer): string {
  for (let attempt = 0; attempt < 100; attempt++) {
    const b = `=_petrel_${random(16).toString("hex")}`;
    if (parts.every((p) => !p.body.includes(b))) return b;
  }
  throw new Error("could not choose a MIME boundary absent from the content");
}

/** A fresh Message-ID: time, the original's queue id and randomness, at our host name. */
function dsnMessageId(input: DsnInput, random: (size: number) => Buffer): string {
  const d = input.now.toISOString().replace(/[^0-9]/g, "").slice(0, 14);
  const q = input.queueId.replace(/[^A-Za-z0-9]/g, "");
  const host = input.reportingMta.replace(/[^A-Za-z0-9.-]/g, "") || "localhost";
  return `<${d}.${q}.${random(4).toString("hex")}@${host}>`;
}
