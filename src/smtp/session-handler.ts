import type { Reply } from "./reply.ts";
import type { Mailbox } from "../mail/envelope.ts";
import type { MailParameters, RcptParameters } from "./mail-parameters.ts";
import type { SaslExchange } from "../sasl/exchange.ts";

/**
 * The boundary between the pure protocol engine (`Session`) and the rest of
 * Petrel, in the spirit of go-smtp's Backend/Session: the engine owns the
 * grammar, sequencing and limits; the handler owns decisions (policy) and
 * storage (spool). The engine never does I/O itself.
 */

/** What the engine knows about the session, handed to every decision. */
export interface SessionState {
  readonly helo: string | null;
  readonly esmtp: boolean;
  readonly tls: { readonly version: string; readonly cipher: string } | null;
  readonly authUser: string | null;
}

/** The transaction being built (RFC 5321 §3.3). */
export interface Transaction {
  readonly mailFrom: Mailbox | null;
  readonly mailParams: MailParameters;
  readonly recipients: readonly AcceptedRecipient[];
}

export interface AcceptedRecipient {
  readonly mailbox: Mailbox;
  readonly params: RcptParameters;
}

/** Where the body of a message goes while it streams in. */
export interface MessageSink {
  /** Decoded content (CRLF line ends, dot-unstuffed). Await for back-pressure. */
  write(chunk: Buffer): Promise<void> | void;
  /** All content received and within limits: store durably, then give the final reply (250 with the queue id, or 4xx/5xx). */
  end(): Promise<Reply>;
  /** The message is refused (size, bad line ends, RSET, disconnect): discard it. */
  abort(): Promise<void> | void;
}

export interface SessionHandler {
  /** EHLO/HELO accepted syntactically; a Reply refuses it (the session stays as it was), undefined greets. */
  helo?(state: SessionState, name: string): Promise<Reply | undefined> | Reply | undefined;
  /** MAIL FROM accepted syntactically; undefined means "250 2.1.0 Ok". */
  mail(state: SessionState, from: Mailbox | null, params: MailParameters): Promise<Reply | undefined> | Reply | undefined;
  /** RCPT TO accepted syntactically; undefined means "250 2.1.5 Ok". */
  rcpt(state: SessionState, tx: Transaction, to: Mailbox, params: RcptParameters): Promise<Reply | undefined> | Reply | undefined;
  /** DATA/first BDAT: open storage, or refuse with a Reply. */
  openMessage(state: SessionState, tx: Transaction): Promise<MessageSink | Reply>;
  /** AUTH <mechanism>: start an exchange, driven by the engine's 334 continuation loop (RFC 4954 §4); undefined if the mechanism is unknown. */
  startAuth?(state: SessionState, mechanism: string): SaslExchange | undefined;
  /** An AUTH exchange succeeded as `user`; a Reply refuses the login (the session stays unauthenticated), undefined gives 235. */
  authenticated?(state: SessionState, user: string): Promise<Reply | undefined> | Reply | undefined;
  /** An AUTH attempt failed; returns true when the client must be disconnected (too many failures). */
  authFailed?(state: SessionState): Promise<boolean> | boolean;
  /**
   * The transaction ended — RSET, EHLO/HELO, STARTTLS, its message stored or
   * refused (RFC 5321 §4.1.4): whatever the handler holds for it is forgotten.
   */
  reset?(): void;
  /** The connection ended (after any message in progress was aborted). */
  close?(): Promise<void> | void;
  /** A protocol event worth a log line (the engine does not log). */
  event?(name: SessionEvent, detail?: Record<string, unknown>): void;
}

export type SessionEvent =
  | "command" | "reply" | "tls-requested" | "auth-success" | "auth-failure" | "message-accepted"
  | "message-refused" | "protocol-error" | "pipelining-violation" | "line-too-long" | "closed";

/** How the engine reaches the connection that owns it. */
export interface SessionTransport {
  /** Send bytes (replies): everything owed at that moment in one buffer, so one socket write. */
  write(data: Buffer): void;
  /** After "220 Ready to start TLS" is written: upgrade, then call Session.tlsEstablished(). */
  startTls(): void;
  /** Close after flushing what was written. */
  close(): void;
  /** Back-pressure: stop/resume reading from the client. */
  pause(): void;
  resume(): void;
}
