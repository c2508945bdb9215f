/**
 * The human-readable first part of a DSN (RFC 6522 §3): plain words for the
 * person who sent the message, one section per kind of outcome (failed,
 * delayed, delivered), each recipient with its reason. Wording is Petrel's
 * own, in the spirit of Postfix's bounce notices.
 *
 * Pure: data in, text out (CRLF line ends, wrapped to 76 columns).
 */
import { rfc5322Date } from "../smtp/trace-headers.ts";
import { cleanText, cutAtBytes, MAX_DIAGNOSTIC } from "./dsn-fields.ts";
import type { DsnRecipient } from "../queue/ports.ts";
import type { ReturnedContent } from "./dsn-original.ts";

const WIDTH = 76;

export interface NoticeInput {
  readonly reportingMta: string;
  readonly recipients: readonly DsnRecipient[];
  /** What the third part holds, or null when nothing is attached. */
  readonly returned: ReturnedContent | null;
  /** Whether headers-only was the sender's own request (RET=HDRS) or our choice. */
  readonly headersRequested: boolean;
  readonly maxOriginalSize: number;
  readonly global: boolean;
}

export function noticeText(n: NoticeInput): string {
  const host = cleanText(n.reportingMta, n.global);
  const failed = n.recipients.filter((r) => r.action === "failed");
  const delayed = n.recipients.filter((r) => r.action === "delayed");
  const done = n.recipients.filter((r) => r.action !== "failed" && r.action !== "delayed");
  const paras: string[] = [`This is the mail system at host ${host}.`];

  if (failed.length > 0) {
    paras.push(
      "Your message could not be delivered to the recipients listed below. " +
        "The mail system has given up on them; the reason for each one follows its address." +
        (n.returned ? " " + attachmentNote(n) : ""),
    );
    paras.push(
      `If you would like help with this, send this report to the postmaster at ${host}. ` +
        "You may remove the text of your own message from it first.",
    );
  }
  if (delayed.length > 0) {
    paras.push(
      (failed.length > 0 ? "Delivery to the recipients below has been delayed. " : "Your message has not yet been delivered to the recipients listed below. ") +
        "This is only a warning: the mail system is still trying, and you do not need to send the message again. " +
        "If it cannot be delivered in the end, you will receive another report.",
    );
  }
  if (done.length > 0) {
    paras.push(
      (failed.length + delayed.length > 0 ? "As you asked, here is the delivery report for the recipients below. " : "As you asked, this report confirms what happened to your message. ") +
        "It was accepted for the recipients listed below.",
    );
  }
  if (failed.length === 0 && n.returned) paras.push(attachmentNote(n));

  let out = paras.map((p) => wrap(p)).join("\r\n");
  out += "\r\n" + indent("The Petrel mail system") + "\r\n";
  for (const [title, group] of [
    ["Could not be delivered:", failed],
    ["Delayed, still trying:", delayed],
    ["Delivered:", done],
  ] as const) {
    if (group.length === 0) continue;
    out += "\r\n" + title + "\r\n\r\n";
    for (const r of group) out += wrap(recipientLine(r, n.global), "    ");
  }
  return out;
}

function attachmentNote(n: NoticeInput): string {
  const r = n.returned!;
  if (r.kind === "full") return "Your message is attached.";
  switch (r.reason) {
    case "too-large":
      return `Your message was too large to be returned in full (more than ${n.maxOriginalSize} bytes), so only its headers are attached.`;
    case "long-lines":
      return "Your message has lines too long to be carried in a report, so only its headers are attached.";
    case "requested":
      return n.headersRequested
        ? "Only the headers of your message are attached, as was asked when it was sent."
        : "The headers of your message are attached.";
  }
}

function recipientLine(r: DsnRecipient, global: boolean): string {
  const who = `<${cleanText(r.address, global)}>`;
  const diag = r.diagnostic !== undefined ? cleanText(r.diagnostic, global, MAX_DIAGNOSTIC) : "";
  const mta = r.remoteMta !== undefined ? cleanText(r.remoteMta, global) : "";
  let reason: string;
  switch (r.action) {
    case "relayed":
      reason = `handed on${mta ? ` to ${mta}` : ""}, which does not send delivery reports; you may hear nothing more about this recipient`;
      break;
    case "expanded":
      reason = "delivered to a list or alias, which passed it on to its members";
      break;
    case "delivered":
      reason = mta ? `delivered to ${mta}` : "delivered to the mailbox";
      if (diag) reason += `: ${diag}`;
      break;
    default:
      if (diag && mta) reason = `the mail server ${mta} replied: ${diag}`;
      else if (diag) reason = diag;
      else reason = r.action === "failed" ? `delivery failed (status ${r.status})` : `delivery was delayed (status ${r.status})`;
      if (r.action === "delayed" && r.willRetryUntil) reason += ` (will keep trying until ${rfc5322Date(r.willRetryUntil)})`;
  }
  return `${who}: ${reason}`;
}

function indent(s: string): string {
  return " ".repeat(Math.max(0, WIDTH - s.length - 8)) + s;
}

/** Word-wrap one paragraph to WIDTH; continuation lines get `hang`. Ends with CRLF. */
function wrap(text: string, hang = ""): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (word === "") continue;
    const sep = line === "" || line === hang ? "" : " ";
    if (line !== "" && line !== hang && line.length + sep.length + word.length > WIDTH) {
      lines.push(line);
      line = hang;
    }
    let w = word;
    // A single word too long even for a fresh line is cut so no line gets near 998 octets.
    while (Buffer.byteLength(line + w) > WIDTH * 4) {
      const cut = cutAtBytes(w, WIDTH * 4 - Buffer.byteLength(line));
      lines.push(line + w.slice(0, cut));
      w = w.slice(cut);
      line = hang;
    }
    line += (line === "" || line === hang ? "" : " ") + w;
  }
  if (line !== "" && line !== hang) lines.push(line);
  return lines.join("\r\n") + "\r\n";
}
