/**
 * What a check is asked with at a stage, for driving one check directly
 * (test/policy/harness.ts drives the whole pipeline): the session and
 * transaction facts as the reception builds them, and a logger that keeps
 * what it was told.
 */
import pino, { type Logger } from "pino";
import type { ClientFacts, SessionFacts, TransactionFacts } from "../../src/policy/check.ts";
import { mailbox, noParams } from "./harness.ts";

export { client, mailbox, noParams } from "./harness.ts";

export function session(c: ClientFacts, authUser: string | null = null): SessionFacts {
  return { client: c, helo: "client.example", esmtp: true, tls: null, authUser };
}

/** A transaction from `from` ("<a@b.example>", "<>") to the `recipients` accepted so far. */
export function transaction(from: string, recipients: string[] = []): TransactionFacts {
  return {
    mailFrom: mailbox(from),
    mailParams: noParams,
    recipients: recipients.map((r) => ({ mailbox: mailbox(r)!, params: {} })),
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
