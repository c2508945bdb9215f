/**
 * One mail transaction over an open session: MAIL FROM with the parameters
 * the server advertised, RCPT TO for each recipient, DATA and the streamed,
 * dot-stuffed message, then the replies after the end of data — one in SMTP
 * (RFC 5321 §4.1.1.4), one per accepted recipient in RCPT order in LMTP
 * (RFC 2033 §4.2).
 *
 * With PIPELINING (RFC 2920) MAIL and every RCPT go in one write; in SMTP
 * DATA goes with them. In LMTP DATA waits for the RCPT replies: the server
 * is local, so the round trip is cheap, and a transaction whose recipients
 * were all refused ends without a DATA exchange.
 */
import type { MailParameters, Recipient } from "../mail/envelope.ts";
import type { Reply } from "../smtp/reply.ts";
import { DotStuffer } from "../smtp/dot-stuffing.ts";
import { encodeXtext } from "../smtp/xtext.ts";
import type { Capabilities } from "./capabilities.ts";
import type { Channel } from "./channel.ts";
import type { MailProtocol, Timeouts } from "./connect-options.ts";
import { SmtpClientError } from "./smtp-error.ts";

/** MAIL FROM parameters to send, each only where the server offers its extension (AUTH= is never sent). */
export type MailParams = Partial<Omit<MailParameters, "auth">>;

/** A recipient to send; NOTIFY and ORCPT ("addr-type;address", not yet xtext-encoded) go only to a server offering DSN. */
export type TransactionRecipient = Recipient;

/** A mail transaction as the client runs it (RFC 5321 §3.3): MAIL, RCPT for each recipient, DATA. */
export interface OutgoingTransaction {
  /** "" for the null reverse-path <>. */
  mailFrom: string;
  mailParams?: MailParams;
  recipients: TransactionRecipient[];
  /** Message content with CRLF line ends, NOT dot-stuffed. */
  message: Buffer | (() => NodeJS.ReadableStream);
}

export interface RecipientResult {
  address: string;
  /** The reply to RCPT TO. */
  reply: Reply;
  /**
   * For an accepted recipient, the reply that decided the message for it:
   * the one reply to the end of data (SMTP), its own reply after the end of
   * data (LMTP), or the refusal of DATA. Absent when RCPT was refused.
   */
  final?: Reply;
}

export interface TransactionResult {
  recipients: RecipientResult[];
  /** SMTP: the reply to the end of data or to a refused DATA. LMTP: the refusal of DATA. Absent when no recipient was accepted. */
  final?: Reply;
}

/** What the transaction needs from its session. */
export interface TransactionSession {
  readonly channel: Channel;
  readonly capabilities: Capabilities;
  readonly protocol: MailProtocol;
  readonly timeouts: Timeouts;
  /** The server ended the session (421): close it. */
  ended(): void;
  /** The server's transaction state is left open (MAIL accepted, no end of data): RSET before the next one. */
  leftOpen(): void;
}

const isPositive = (r: Reply) => r.code >= 200 && r.code < 300;

export function checkLine(s: string, what: string): string {
  if (/[\x00-\x1f\x7f]/.test(s)) throw new SmtpClientError("protocol", what, `${what}: control characters (CR, LF, …) are not allowed in ${JSON.stringify(s)}`);
  return s;
}

/**
 * Run `tx`. Throws when MAIL is refused (kind "reply", phase "MAIL": the
 * reply applies to every recipient), on a 421, and on connection errors and
 * timeouts (in LMTP with `decided` holding the recipients whose reply after
 * the end of data had come); refused recipients and a refused message are
 * returned, not thrown.
 */
export async function runTransaction(s: TransactionSession, tx: OutgoingTransaction): Promise<TransactionResult> {
  if (tx.recipients.length === 0) throw new SmtpClientError("protocol", "RCPT", "a transaction needs at least one recipient");
  const { channel, capabilities: caps, timeouts: t } = s;
  const lmtp = s.protocol === "lmtp";
  const mailLine = mailCommand(caps, tx);
  const rcptLines = tx.recipients.map((r) => rcptCommand(caps, r));
  const results: RecipientResult[] = [];
  const check421 = (phase: string, r: Reply) => {
    if (r.code === 421) {
      s.ended();
      throw channel.error("reply", phase, "the server ended the session", r);
    }
  };
  const refusedSender = (mail: Reply) => channel.error("reply", "MAIL", "the server refused the sender", mail);

  let dataReply: Reply | undefined;
  if (caps.pipelining) {
    channel.send(lmtp ? [mailLine, ...rcptLines] : [mailLine, ...rcptLines, "DATA"], "MAIL");
    const mail = await channel.read("MAIL", t.command);
    check421("MAIL", mail);
    for (const r of tx.recipients) {
      const reply = await channel.read("RCPT", t.command);
      check421("RCPT", reply);
      results.push({ address: r.address, reply });
    }
    if (!lmtp) {
      dataReply = await channel.read("DATA", t.dataInit);
      check421("DATA", dataReply);
    }
    if (!isPositive(mail) || !results.some((r) => isPositive(r.reply))) {
      if (dataReply?.code === 354) {
        // RFC 2920 §3.1: the server should have refused DATA; end the empty message and reset it at once.
        await abortData(s);
        await resetNow(s);
      } else if (isPositive(mail)) s.leftOpen();
      if (!isPositive(mail)) throw refusedSender(mail);
      return { recipients: results };
    }
  } else {
    const mail = await channel.command(mailLine, "MAIL", t.command);
    check421("MAIL", mail);
    if (!isPositive(mail)) throw refusedSender(mail);
    for (let i = 0; i < tx.recipients.length; i++) {
      const reply = await channel.command(rcptLines[i], "RCPT", t.command);
      check421("RCPT", reply);
      results.push({ address: tx.recipients[i].address, reply });
    }
    if (!results.some((r) => isPositive(r.reply))) {
      s.leftOpen();
      return { recipients: results };
    }
  }
  dataReply ??= await channel.command("DATA", "DATA", t.dataInit);
  check421("DATA", dataReply);

  const accepted = results.filter((r) => isPositive(r.reply));
  if (dataReply.code !== 354) {
    for (const r of accepted) r.final = dataReply;
    s.leftOpen();
    return { recipients: results, final: dataReply };
  }
  // Owed from now: a server that answers before the final dot (a 421 mid-DATA) is answering this.
  channel.owe(lmtp ? accepted.length : 1);
  await sendContent(channel, tx.message, t.dataBlock);
  if (!lmtp) {
    const final = await channel.read("DATA", t.dataTerm);
    if (final.code === 421) s.ended();
    for (const r of accepted) r.final = final;
    return { recipients: results, final };
  }
  for (const r of accepted) {
    let reply: Reply;
    try {
      reply = await channel.read("DATA", t.dataTerm);
    } catch (err) {
      throw withDecided(err, accepted);
    }
    r.final = reply;
    if (reply.code === 421) {
      s.ended();
      if (r !== accepted.at(-1)) throw withDecided(channel.error("reply", "DATA", "the server ended the session", reply), accepted);
    }
  }
  return { recipients: results };
}

/** The error with the LMTP replies already received after the end of data (those recipients are decided). */
function withDecided(err: unknown, accepted: readonly RecipientResult[]): unknown {
  if (!(err instanceof SmtpClientError)) return err;
  const decided = accepted.filter((r) => r.final !== undefined).map((r) => ({ address: r.address, reply: r.final! }));
  return decided.length === 0 ? err : err.withDecided(decided);
}

async function resetNow(s: TransactionSession): Promise<void> {
  const r = await s.channel.command("RSET", "RSET", s.timeouts.command);
  if (r.code === 421) s.ended();
}

async function abortData(s: TransactionSession): Promise<void> {
  s.channel.owe(1);
  await s.channel.writeData(Buffer.from(".\r\n"), s.timeouts.dataBlock);
  await s.channel.read("DATA", s.timeouts.dataTerm);
}

function mailCommand(caps: Capabilities, tx: OutgoingTransaction): string {
  const p = tx.mailParams ?? {};
  const params: string[] = [];
  if (caps.size !== undefined) {
    const size = p.size ?? (Buffer.isBuffer(tx.message) ? tx.message.length : undefined);
    if (size !== undefined) params.push(`SIZE=${size}`);
  }
  if (caps.eightBitMime) {
    const body = p.body ?? (Buffer.isBuffer(tx.message) && has8Bit(tx.message) ? "8BITMIME" : undefined);
    if (body) params.push(`BODY=${body}`);
  }
  if (p.smtputf8 && caps.smtputf8) params.push("SMTPUTF8");
  // RFC 3461 §4.3, §4.4: RET and ENVID only to a server that offers DSN.
  if (caps.dsn) {
    if (p.ret) params.push(`RET=${p.ret}`);
    if (p.envid) params.push(`ENVID=${encodeXtext(p.envid)}`);
  }
  if (p.requireTls && caps.requireTls) params.push("REQUIRETLS");
  return checkLine(["MAIL FROM:<" + tx.mailFrom + ">", ...params].join(" "), "MAIL");
}

function rcptCommand(caps: Capabilities, r: TransactionRecipient): string {
  const params: string[] = [];
  // RFC 3461 §4.1, §4.2: NOTIFY and ORCPT only to a server that offers DSN.
  if (caps.dsn) {
    if (r.notify && r.notify.length > 0) params.push(`NOTIFY=${r.notify.join(",").toUpperCase()}`);
    if (r.orcpt) params.push(`ORCPT=${encodeOrcpt(r.orcpt)}`);
  }
  return checkLine(["RCPT TO:<" + r.address + ">", ...params].join(" "), "RCPT");
}

async function sendContent(channel: Channel, message: OutgoingTransaction["message"], blockMs: number): Promise<void> {
  const stuffer = new DotStuffer();
  // One write per input chunk (its stuffed pieces joined): few packets, and back-pressure per chunk.
  const block = (chunk: Buffer) => {
    const parts = stuffer.encode(chunk);
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  };
  if (Buffer.isBuffer(message)) {
    for (let i = 0; i < message.length; i += 65536) await channel.writeData(block(message.subarray(i, i + 65536)), blockMs);
  } else {
    try {
      for await (const chunk of message()) {
        const buf = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
        if (buf.length > 0) await channel.writeData(block(buf), blockMs);
      }
    } catch (err) {
      if (err instanceof SmtpClientError) throw err;
      // The message cannot be ended cleanly (a terminator would send a truncated message).
      channel.fail(new SmtpClientError("protocol", "DATA", `reading the message failed: ${(err as Error).message}`, { cause: err }));
      throw err;
    }
  }
  await channel.writeData(stuffer.end(), blockMs);
}

function has8Bit(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] > 0x7f) return true;
  return false;
}

/** ORCPT=addr-type;xtext (RFC 3461 §4.2); the utf-8 type uses RFC 6533's \x{HEX} form for non-ASCII. */
function encodeOrcpt(orcpt: string): string {
  const semi = orcpt.indexOf(";");
  const type = semi < 0 ? "rfc822" : orcpt.slice(0, semi);
  const addr = semi < 0 ? orcpt : orcpt.slice(semi + 1);
  if (type.toLowerCase() !== "utf-8") return `${type};${encodeXtext(addr)}`;
  let out = "";
  for (const ch of addr) {
    const cp = ch.codePointAt(0)!;
    out += cp >= 33 && cp <= 126 && ch !== "+" && ch !== "=" && ch !== "\\" ? ch : `\\x{${cp.toString(16).toUpperCase()}}`;
  }
  return `${type};${out}`;
}
