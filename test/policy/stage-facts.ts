/**
 * What a check is asked with at each stage, built the way the pipeline
 * builds it, so checks are driven stage by stage with no socket (Postfix's
 * smtpd_check test scripts) — and a logger that keeps what it was told.
 */
import pino, { type Logger } from "pino";
import type { ClientFacts, SessionFacts, TransactionFacts } from "../../src/policy/check.ts";
import type { ListenerRole, Mailbox, MailParameters } from "../../src/mail/envelope.ts";

export function client(address: string, role: ListenerRole = "mx"): ClientFacts {
  return { address, port: 40000, localAddress: "127.0.0.1", localPort: role === "mx" ? 25 : 587, role, tls: null };
}

export function session(c: ClientFacts, authUser: string | null = null): SessionFacts {
  return { client: c, helo: "client.example", esmtp: true, tls: null, authUser };
}

export const NO_MAIL_PARAMS: MailParameters = { smtputf8: false, requireTls: false };

export function mailbox(address: string): Mailbox {
  const at = address.lastIndexOf("@");
  return { localPart: address.slice(0, at), domain: address.slice(at + 1) };
}

export function transaction(from: string | null, recipients: string[] = []): TransactionFacts {
  return {
    mailFrom: from === null ? null : mailbox(from),
    mailParams: NO_MAIL_PARAMS,
    recipients: recipients.map((r) => ({ mailbox: mailbox(r), params: {} })),
  };
}

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A pino logger at debug level whose lines are kept, parsed, in `lines`. */
export function memoryLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

export const WARN = 40;
