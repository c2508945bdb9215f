import { reply, type Reply } from "../../smtp/reply.ts";
import { DataCursor, MilterProtocolError, type Packet } from "./protocol.ts";

/**
 * What a filter answers to one step: a decision, and before it (at end of
 * message) the changes it asks for. Parsed from SMFIR_* packets.
 */

export type Decision =
  | { readonly kind: "continue" }
  /** Accept: at connect or HELO for the whole connection, later for this message; the filter is not asked again. */
  | { readonly kind: "accept" }
  | { readonly kind: "reject"; readonly reply: Reply }
  | { readonly kind: "tempfail"; readonly reply: Reply }
  | { readonly kind: "discard" }
  /** SMFIR_SKIP: no more body chunks, go on to end of message. */
  | { readonly kind: "skip" }
  /** SMFIR_SHUTDOWN / SMFIR_CONN_FAIL: close the SMTP connection (421). */
  | { readonly kind: "shutdown" };

/** One change at end of message; header values are as the filter sent them (see modifications.ts). */
export type Modification =
  | { readonly kind: "addHeader"; readonly name: string; readonly value: Buffer }
  /** `index` 0 is the top of the header section (Sendmail's smfi_insheader). */
  | { readonly kind: "insertHeader"; readonly index: number; readonly name: string; readonly value: Buffer }
  /** `index` counts fields of that name from 1; an empty value deletes the field. */
  | { readonly kind: "changeHeader"; readonly index: number; readonly name: string; readonly value: Buffer }
  | { readonly kind: "addRecipient"; readonly address: string }
  | { readonly kind: "deleteRecipient"; readonly address: string };

/** Postfix's texts for a bare SMFIR_REJECT / SMFIR_TEMPFAIL, with the enhanced codes of RFC 3463 §3.8 (security or policy). */
export const MILTER_REJECT = reply(550, "5.7.1", "Command rejected");
export const MILTER_TEMPFAIL = reply(451, "4.7.1", "Service unavailable - try again later");
export const MILTER_SHUTDOWN = reply(421, "4.7.0", "Service unavailable - closing connection");

/**
 * SMFIR_REPLYCODE's text: "550 5.7.1 text", possibly several lines
 * ("550-5.7.1 one\r\n550 5.7.1 two"). The code must be 4xx or 5xx. A missing
 * enhanced code, or one of the wrong class, becomes X.7.1 — the filter's
 * intent (refuse) is kept rather than dropped for a detail. Sendmail treats
 * the text as a format string, so "%%" means "%".
 */
export function parseReplyCode(text: string): Reply {
  const lines = text.replace(/\r?\n$/, "").split(/\r?\n/);
  let code = 0;
  let status: string | undefined;
  const out: string[] = [];
  for (const [i, line] of lines.entries()) {
    const m = /^([45]\d\d)([ -]|$)(?:([245]\.\d{1,3}\.\d{1,3})(?: |$))?(.*)$/.exec(line);
    if (!m) throw new MilterProtocolError(`malformed reply text "${text.slice(0, 80)}"`);
    const lineCode = Number(m[1]);
    if (i === 0) code = lineCode;
    else if (lineCode !== code) throw new MilterProtocolError(`reply lines with different codes in "${text.slice(0, 80)}"`);
    if (i === 0 && m[3] !== undefined && m[3][0] === m[1][0]) status = m[3];
    out.push(m[4].replace(/%(.?)/g, "$1"));
  }
  return reply(code, status ?? `${String(code)[0]}.7.1`, ...out);
}

export type Answer =
  | { readonly kind: "decision"; readonly decision: Decision }
  | { readonly kind: "progress" }
  | { readonly kind: "quarantine"; readonly reason: string }
  | { readonly kind: "modification"; readonly modification: Modification };

/** Parse one packet from the filter. Modifications are only valid in answer to end of message. */
export function parseAnswer(p: Packet, atEndOfMessage: boolean): Answer {
  const empty = (d: Decision): Answer => {
    if (p.data.length !== 0) throw new MilterProtocolError(`answer "${p.code}" with ${p.data.length} unexpected octets`);
    return { kind: "decision", decision: d };
  };
  switch (p.code) {
    case "c": return empty({ kind: "continue" });
    case "a": return empty({ kind: "accept" });
    case "r": return empty({ kind: "reject", reply: MILTER_REJECT });
    case "t": return empty({ kind: "tempfail", reply: MILTER_TEMPFAIL });
    case "d": return empty({ kind: "discard" });
    case "s": return empty({ kind: "skip" });
    case "4": case "f": return empty({ kind: "shutdown" });
    case "p":
      if (p.data.length !== 0) throw new MilterProtocolError(`progress with ${p.data.length} unexpected octets`);
      return { kind: "progress" };
    case "y": {
      const r = parseReplyCode(new DataCursor(p.data, "reply code").rest());
      return { kind: "decision", decision: r.code >= 500 ? { kind: "reject", reply: r } : { kind: "tempfail", reply: r } };
    }
    case "q": return { kind: "quarantine", reason: new DataCursor(p.data, "quarantine").rest() };
  }
  if (!atEndOfMessage) throw new MilterProtocolError(`unexpected answer "${p.code}" before end of message`);
  const c = new DataCursor(p.data, `answer "${p.code}"`);
  let m: Modification;
  switch (p.code) {
    case "h": m = { kind: "addHeader", name: c.string(), value: c.bytes() }; break;
    case "i": m = { kind: "insertHeader", index: c.uint32(), name: c.string(), value: c.bytes() }; break;
    case "m": m = { kind: "changeHeader", index: c.uint32(), name: c.string(), value: c.bytes() }; break;
    case "+": m = { kind: "addRecipient", address: c.string() }; break;
    case "-": m = { kind: "deleteRecipient", address: c.string() }; break;
    default: throw new MilterProtocolError(`answer "${p.code}" is not one Petrel offered (replace body, change sender and recipient parameters are not)`);
  }
  c.end();
  if ((m.kind === "addHeader" || m.kind === "insertHeader" || m.kind === "changeHeader") && !/^[\x21-\x39\x3b-\x7e]+$/.test(m.name)) {
    throw new MilterProtocolError(`header name "${m.name.slice(0, 40)}" is not a field name (RFC 5322 §3.6.8)`);
  }
  return { kind: "modification", modification: m };
}
