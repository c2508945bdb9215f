import { isUtf8 } from "node:buffer";
import type { Reply } from "./reply.ts";
import * as R from "./replies.ts";
import { lineEndProblem, splitCommand } from "./command-line.ts";
import type { CommandAction, SessionContext } from "./session-context.ts";
import { EHLO, HELO, HELP, NOOP, QUIT, RSET, STARTTLS, VRFY } from "./session-commands.ts";
import { MAIL, RCPT } from "./envelope-commands.ts";
import { BDAT, DATA } from "./message-commands.ts";
import { AUTH } from "./auth-command.ts";

/**
 * The verbs the server knows and, for each, the checks that come before its
 * own (as Postfix's smtpd_cmd_table does with per-verb flags). The checks run
 * in the order of the fields below; the first that fails refuses the command.
 * Then the verb's own syntax check, then — for a verb that ends a pipelining
 * group — the pipelining check, then the verb itself.
 */
export interface CommandFlags {
  /** Not SMTP at all (HTTP on an SMTP port): 554 and close. */
  readonly notSmtp?: true;
  /** Known but not implemented: 502 5.5.1 (RFC 5321 §4.2.4). */
  readonly notImplemented?: true;
  /** Takes no argument; the usage for the 501. */
  readonly noArgument?: string;
  /** Exists only while this extension is offered (RFC 3207, RFC 4954, RFC 3030). */
  readonly extension?: "STARTTLS" | "AUTH" | "CHUNKING";
  /** Only over TLS: 538 5.7.11 (AUTH; Petrel never offers it in the clear). */
  readonly needsTls?: true;
  /** Only after EHLO or HELO: 503 5.5.1 (RFC 5321 §4.1.4). */
  readonly needsHelo?: true;
  /** Not once authenticated: 503 5.5.1 (RFC 4954 §4: no second AUTH). */
  readonly beforeAuth?: true;
  /** Not inside a mail transaction: this 503. */
  readonly outsideTransaction?: Reply;
  /** On a listener that requires AUTH (submission), only after it: 530 5.7.0 (RFC 6409 §4.3). */
  readonly needsAuth?: true;
  /** Only inside a mail transaction: 503 need MAIL. */
  readonly needsMail?: true;
  /** Not once BDAT has started the message: 503 (RFC 3030 §2). */
  readonly beforeBdat?: true;
  /** Only with at least one accepted recipient: 503 need RCPT. */
  readonly needsRcpt?: true;
  /**
   * Ends a pipelining group (RFC 2920 §3.1): an unauthenticated client must
   * wait for its reply; commands already sent behind it are refused and
   * dropped (554 5.5.0).
   */
  readonly endsGroup?: true;
  /** A refusal counts toward the error limits; false only where a refusal is not the client's fault. */
  readonly refusalIsError: boolean;
}

/** What the flags are checked against. */
export interface CommandView {
  readonly helo: string | null;
  readonly tls: boolean;
  readonly authenticated: boolean;
  readonly requireAuth: boolean;
  readonly startTlsEnabled: boolean;
  readonly authEnabled: boolean;
  readonly chunkingEnabled: boolean;
  readonly inTransaction: boolean;
  readonly bdatStarted: boolean;
  readonly recipients: number;
}

interface Command {
  readonly flags: CommandFlags;
  readonly action?: CommandAction;
}

const counted = { refusalIsError: true } as const;
const notImplemented: Command = { flags: { ...counted, notImplemented: true } };
const notSmtp: Command = { flags: { ...counted, notSmtp: true } };

export const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  ["EHLO", { flags: { ...counted, endsGroup: true }, action: EHLO }],
  ["HELO", { flags: { ...counted, endsGroup: true }, action: HELO }],
  ["MAIL", { flags: { ...counted, needsHelo: true, outsideTransaction: R.nestedMail, needsAuth: true }, action: MAIL }],
  ["RCPT", { flags: { ...counted, needsMail: true, beforeBdat: true }, action: RCPT }],
  ["DATA", { flags: { ...counted, noArgument: "DATA", needsMail: true, beforeBdat: true, needsRcpt: true, endsGroup: true }, action: DATA }],
  ["BDAT", { flags: { ...counted, extension: "CHUNKING" }, action: BDAT }],
  ["RSET", { flags: { ...counted, noArgument: "RSET" }, action: RSET }],
  ["NOOP", { flags: counted, action: NOOP }],
  ["QUIT", { flags: counted, action: QUIT }],
  // RFC 5321 §3.5.3: VRFY without an argument is answered with its syntax, not held against the client.
  ["VRFY", { flags: { refusalIsError: false }, action: VRFY }],
  ["HELP", { flags: counted, action: HELP }],
  ["STARTTLS", { flags: { ...counted, noArgument: "STARTTLS", extension: "STARTTLS", outsideTransaction: R.transactionInProgress }, action: STARTTLS }],
  ["AUTH", {
    flags: { ...counted, extension: "AUTH", needsTls: true, needsHelo: true, beforeAuth: true, outsideTransaction: R.transactionInProgress },
    action: AUTH,
  }],
  ["EXPN", notImplemented],
  ...["TURN", "ETRN", "SEND", "SOML", "SAML"].map((verb): [string, Command] => [verb, notImplemented]),
  ...["GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS"].map((verb): [string, Command] => [verb, notSmtp]),
]);

/** The first check of `flags` that refuses the command now, or null. */
export function refusal(verb: string, flags: CommandFlags, arg: string, v: CommandView): Reply | null {
  if (flags.notImplemented) return R.notImplemented(verb);
  if (flags.noArgument !== undefined && arg.trim() !== "") return R.syntax(flags.noArgument);
  if (flags.extension === "STARTTLS") {
    if (v.tls) return R.alreadyTls;
    if (!v.startTlsEnabled) return R.notImplemented("STARTTLS");
  }
  if (flags.extension === "AUTH" && !v.authEnabled) return R.authNotEnabled;
  if (flags.extension === "CHUNKING" && !v.chunkingEnabled) return R.chunkingNotImplemented;
  if (flags.needsTls && !v.tls) return R.encryptionRequired;
  if (flags.needsHelo && v.helo === null) return R.needHelo;
  if (flags.beforeAuth && v.authenticated) return R.alreadyAuthenticated;
  if (flags.outsideTransaction && v.inTransaction) return flags.outsideTransaction;
  if (flags.needsAuth && v.requireAuth && !v.authenticated) {
    return !v.tls && v.authEnabled ? R.needTlsThenAuth : R.authRequired;
  }
  if (flags.needsMail && !v.inTransaction) return R.needMail;
  if (flags.beforeBdat && v.bdatStarted) return R.badSequence(`${verb} after BDAT`);
  if (flags.needsRcpt && v.recipients === 0) return R.needRcpt;
  return null;
}

/** A command line (with its CRLF) from the client: parse it, check it against the table, run it. */
export function dispatch(ctx: SessionContext, raw: Buffer): void | Promise<void> {
  const bad = lineEndProblem(raw);
  if (bad) {
    ctx.event("protocol-error", { problem: bad });
    return ctx.error(bad === "bare LF" ? R.bareLf : R.bareCr);
  }
  const body = raw.subarray(0, raw.length - 2);
  if (body.includes(0)) {
    // RFC 5321 §4.1.1: commands are text; a NUL would be cut off or smuggled by C code downstream.
    ctx.event("protocol-error", { problem: "NUL" });
    return ctx.error(R.nulInCommand);
  }
  if (!isUtf8(body)) return ctx.error(R.invalidUtf8);
  const { verb, arg } = splitCommand(body.toString("utf8"));
  ctx.event("command", { verb });
  const command = COMMANDS.get(verb);
  if (command === undefined) return ctx.error(verb === "" ? R.emptyCommand : R.unknownCommand);
  const { flags, action } = command;
  if (flags.notSmtp) {
    // HTTP on an SMTP port: say so and close.
    ctx.event("protocol-error", { problem: "http" });
    ctx.send(R.notSmtp);
    return ctx.close();
  }
  const refuse = flags.refusalIsError ? (r: Reply) => ctx.error(r) : (r: Reply) => ctx.send(r);
  const refused = refusal(verb, flags, arg, view(ctx)) ?? action?.validate?.(ctx, arg);
  if (refused) {
    refuse(refused);
    // As Postfix does: 421 and 521 end the session (RFC 5321 §3.8, RFC 7504).
    if (refused.code === 421 || refused.code === 521) ctx.close();
    return;
  }
  if (flags.endsGroup && ctx.pipelinedAfter()) return;
  return action!.run(ctx, arg, refuse);
}

function view(ctx: SessionContext): CommandView {
  return {
    helo: ctx.helo,
    tls: ctx.tls !== null,
    authenticated: ctx.authUser !== null,
    requireAuth: ctx.opts.requireAuth,
    startTlsEnabled: ctx.startTlsEnabled,
    authEnabled: ctx.authEnabled,
    chunkingEnabled: !ctx.hidden.has("CHUNKING"),
    inTransaction: ctx.inTransaction,
    bdatStarted: ctx.message.started,
    recipients: ctx.recipients.length,
  };
}
