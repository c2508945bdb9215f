import type { Reply } from "./reply.ts";
import type { Mailbox } from "../mail/envelope.ts";
import type { MailParameters } from "./mail-parameters.ts";
import * as R from "./replies.ts";
import type {
  AcceptedRecipient, SessionEvent, SessionHandler, SessionState, SessionTransport, Transaction,
} from "./session-handler.ts";
import type { SessionOptions } from "./session-options.ts";
import { LineFramer } from "./line-framer.ts";
import { ReplyOutput } from "./reply-output.ts";
import { MessageReceiver } from "./message-receiver.ts";
import { AuthDriver } from "./auth-driver.ts";
import type { Extension, ExtensionView } from "./extensions.ts";

/**
 * What one server session knows and owns, shared by the parts of the engine
 * (as Postfix's SMTPD_STATE is by smtpd's command handlers): the session and
 * transaction state of RFC 5321 §4.1.4, the input, the replies owed, the
 * message being received and the AUTH exchange in progress. The `Session`
 * class is the public face; this holds the state and the few operations
 * every part needs (reply, refuse, close, reset).
 */

/** What the input is read as: commands, message data, AUTH responses; or not at all. */
export type Mode = "command" | "data" | "bdat" | "auth" | "tls-pending" | "closed";

/**
 * What a verb does once the command table's checks have passed. It refuses
 * through `refuse`, which the table makes count as an error or not.
 */
export interface CommandAction {
  /** Checks that come before the end of a pipelining group is enforced (syntax); a Reply refuses. */
  validate?(ctx: SessionContext, arg: string): Reply | undefined;
  run(ctx: SessionContext, arg: string, refuse: (r: Reply) => void): Promise<void> | void;
}

export class SessionContext {
  readonly opts: SessionOptions;
  readonly handler: SessionHandler;
  readonly transport: SessionTransport;

  // Session state (RFC 5321 §4.1.4: EHLO/RSET/STARTTLS reset parts of it).
  helo: string | null = null;
  esmtp = false;
  tls: { version: string; cipher: string } | null;
  authUser: string | null = null;
  /** Messages accepted on this connection (RFC 9422 MAILMAX). */
  transactions = 0;

  // Transaction state: undefined = no transaction (null is the null reverse-path).
  mailFrom: Mailbox | null | undefined = undefined;
  mailParams: MailParameters | null = null;
  recipients: AcceptedRecipient[] = [];

  mode: Mode = "command";
  readonly input: LineFramer;
  readonly replies: ReplyOutput;
  readonly message: MessageReceiver;
  readonly auth = new AuthDriver();
  readonly hidden: ReadonlySet<Extension>;

  constructor(opts: SessionOptions, handler: SessionHandler, transport: SessionTransport) {
    this.opts = opts;
    this.handler = handler;
    this.transport = transport;
    this.hidden = new Set(opts.hide ?? []);
    this.tls = opts.implicitTls ? { ...opts.implicitTls } : null;
    this.input = new LineFramer(opts.limits.commandLine);
    this.replies = new ReplyOutput(opts.limits, !this.hidden.has("ENHANCEDSTATUSCODES"));
    this.message = new MessageReceiver(opts.limits.messageSize, opts.bareNewline);
  }

  get state(): SessionState {
    return { helo: this.helo, esmtp: this.esmtp, tls: this.tls, authUser: this.authUser };
  }

  get inTransaction(): boolean {
    return this.mailFrom !== undefined;
  }

  get closed(): boolean {
    return this.mode === "closed";
  }

  /** AUTH can be used on this listener: mechanisms are configured, the handler runs exchanges, it is not hidden. */
  get authEnabled(): boolean {
    return this.opts.authMechanisms.length > 0 && this.handler.startAuth !== undefined && !this.hidden.has("AUTH");
  }

  /** STARTTLS can be used on this listener: a certificate exists and it is not hidden. */
  get startTlsEnabled(): boolean {
    return this.opts.startTlsAvailable && !this.hidden.has("STARTTLS");
  }

  get extensionView(): ExtensionView {
    return {
      limits: this.opts.limits,
      hidden: this.hidden,
      esmtp: this.esmtp,
      tls: this.tls !== null,
      startTlsEnabled: this.startTlsEnabled,
      authMechanisms: this.opts.authMechanisms,
      authEnabled: this.authEnabled,
      authenticated: this.authUser !== null,
    };
  }

  transaction(): Transaction {
    return { mailFrom: this.mailFrom ?? null, mailParams: this.mailParams!, recipients: this.recipients };
  }

  event(name: SessionEvent, detail?: Record<string, unknown>): void {
    this.handler.event?.(name, detail);
  }

  /** Owe the client a reply (written at the next flush). */
  send(r: Reply): void {
    if (this.closed) return;
    this.replies.add(r);
    this.event("reply", { code: r.code });
  }

  /** A refusal: it counts toward the error limits (Postfix smtpd_*_error_limit). */
  error(r: Reply): void {
    this.send(r);
    if (this.replies.countError()) {
      this.send(R.tooManyErrors);
      this.close();
    }
  }

  flush(): void {
    const data = this.replies.take();
    if (data !== null) this.transport.write(data);
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.mode = "closed";
    this.input.clear();
    void this.abortMessage();
    this.event("closed");
    this.transport.close();
  }

  /** RFC 5321 §4.1.4: the transaction (not the session) is forgotten. */
  resetTransaction(): void {
    if (this.mailFrom !== undefined) this.handler.reset?.();
    this.mailFrom = undefined;
    this.mailParams = null;
    this.recipients = [];
    this.message.reset();
  }

  abortMessage(): Promise<void> {
    return this.message.abort();
  }

  /**
   * Postfix's pipelining check: an unauthenticated client that sent more
   * commands after one that ends a command group (RFC 2920 §3.1: EHLO, HELO,
   * DATA …) did not wait for the reply it needed. Refuse and drop them.
   */
  pipelinedAfter(): boolean {
    if (this.input.queued === 0 || this.authUser !== null) return false;
    this.event("pipelining-violation", { pending: this.input.queued });
    this.input.clear();
    this.error(R.improperPipelining);
    return true;
  }
}
