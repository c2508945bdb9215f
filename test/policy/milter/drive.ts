/**
 * Drives a check through one SMTP connection the way the policy runner does
 * — open, connect, HELO, AUTH, MAIL, RCPT…, DATA, the content in chunks, end
 * of data, close — stopping where a stage refuses, so a check can be tested
 * with no socket on the SMTP side. And `storedMessage`: the content with a
 * result's header edits applied, as the spool gives it back.
 */
import pino, { type Logger } from "pino";
import { Writable } from "node:stream";
import { Readable } from "node:stream";
import type { Check, CheckResult, ClientFacts, SessionFacts, TransactionFacts } from "../../../src/policy/check.ts";
import type { Envelope } from "../../../src/mail/envelope.ts";
import { formatField } from "../../../src/mail/header-field.ts";
import { storedMessage as readStored } from "../../../src/spool/stored-message.ts";
import type { Mailbox, RcptParameters } from "../../../src/mail/envelope.ts";

export interface Conversation {
  readonly client?: Partial<ClientFacts>;
  readonly helo?: string;
  readonly auth?: { readonly user: string; readonly mechanism: string };
  /** One transaction, or several on the same connection. */
  readonly transactions: readonly Transaction[];
}

export interface Transaction {
  readonly from: string | null;
  readonly to: readonly string[];
  readonly notify?: RcptParameters["notify"];
  /** The content, CRLF line ends; absent: the transaction ends with RSET after the recipients. */
  readonly content?: Buffer | string;
  /** Chunk size for the content (the SMTP side hands it over in pieces). */
  readonly chunk?: number;
  readonly queueId?: string;
}

export interface TransactionOutcome {
  readonly mail?: CheckResult | void;
  readonly rcpt: (CheckResult | void)[];
  readonly endOfData?: CheckResult | void;
}

export interface Outcome {
  readonly connect?: CheckResult | void;
  readonly helo?: CheckResult | void;
  readonly transactions: TransactionOutcome[];
}

export function mailbox(address: string): Mailbox {
  const at = address.lastIndexOf("@");
  return { localPart: address.slice(0, at), domain: address.slice(at + 1) };
}

function refused(r: CheckResult | void): boolean {
  return r !== undefined && (r.verdict?.action === "reject" || r.verdict?.action === "tempfail");
}

export async function converse(check: Check, c: Conversation): Promise<Outcome> {
  const client: ClientFacts = {
    address: "127.0.0.1", port: 40000, localAddress: "127.0.0.1", localPort: 25, role: "mx", tls: null, ...c.client,
  };
  const session = await check.open(client);
  const outcome: { connect?: CheckResult | void; helo?: CheckResult | void; transactions: TransactionOutcome[] } = { transactions: [] };
  try {
    outcome.connect = await session.connect?.();
    if (refused(outcome.connect)) return outcome;
    let facts: SessionFacts = { client, helo: c.helo ?? "client.example", esmtp: true, tls: client.tls, authUser: null };
    outcome.helo = await session.helo?.(facts, facts.helo!);
    if (refused(outcome.helo)) return outcome;
    if (c.auth) {
      await session.auth?.(facts, { mechanism: c.auth.mechanism, user: c.auth.user });
      facts = { ...facts, authUser: c.auth.user };
    }
    for (const t of c.transactions) {
      const from = t.from === null ? null : mailbox(t.from);
      const mailParams = { smtputf8: false, requireTls: false };
      const result: { mail?: CheckResult | void; rcpt: (CheckResult | void)[]; endOfData?: CheckResult | void } = { rcpt: [] };
      outcome.transactions.push(result);
      result.mail = await session.mail?.(facts, from, mailParams);
      if (refused(result.mail)) {
        session.reset?.();
        continue;
      }
      const accepted: TransactionFacts["recipients"][number][] = [];
      for (const to of t.to) {
        const tx: TransactionFacts = { mailFrom: from, mailParams, recipients: [...accepted] };
        const params: RcptParameters = t.notify ? { notify: t.notify } : {};
        const r = await session.rcpt?.(facts, tx, mailbox(to), params);
        result.rcpt.push(r);
        if (!refused(r)) accepted.push({ mailbox: mailbox(to), params });
      }
      if (accepted.length === 0 || t.content === undefined) {
        session.reset?.();
        continue;
      }
      const tx: TransactionFacts = { queueId: t.queueId ?? "4Qtest0000A", mailFrom: from, mailParams, recipients: accepted };
      const message = await session.message?.(facts, tx);
      const content = Buffer.isBuffer(t.content) ? t.content : Buffer.from(t.content);
      const size = t.chunk ?? 8192;
      for (let i = 0; i < content.length; i += size) await message?.body?.(content.subarray(i, i + size));
      result.endOfData = await message?.endOfData([], new Map());
    }
    return outcome;
  } finally {
    await session.close?.();
  }
}

/** A logger whose lines the test can read. */
export function capturingLogger(): { log: Logger; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString("utf8").split("\n").filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "debug" }, sink), lines: () => lines };
}

/**
 * The message as stored and read back: the content with a result's headers
 * and header edits applied by the spool's own reader (the one every agent
 * reads through), byte for byte.
 */
export async function storedMessage(content: Buffer | string, result: CheckResult | void): Promise<Buffer> {
  const envelope = {
    ...({} as Envelope),
    prepend: (result?.headers ?? []).map((f) => formatField(f) ?? "").join(""),
    headerEdits: result?.headerEdits ?? [],
  };
  const chunks: Buffer[] = [];
  for await (const chunk of readStored(envelope, Readable.from([Buffer.isBuffer(content) ? content : Buffer.from(content, "latin1")]))) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The value of the first field `name` in a stored message, folds unfolded. */
export function field(message: Buffer, name: string): string | undefined {
  const text = message.toString("latin1");
  const section = text.slice(0, text.indexOf("\r\n\r\n") + 2);
  for (const f of section.split(/\r\n(?![ \t])/)) {
    const colon = f.indexOf(":");
    if (colon > 0 && f.slice(0, colon).trim().toLowerCase() === name.toLowerCase()) return f.slice(colon + 1).replace(/\r\n/g, "").trim();
  }
  return undefined;
}
