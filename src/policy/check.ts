import type { Reply } from "../smtp/reply.ts";
import type { ListenerRole, Mailbox, MailParameters, RcptParameters } from "../mail/envelope.ts";
import type { HeaderEdit, HeaderField, ReceivedField } from "../mail/header-field.ts";

/**
 * A check: one question the policy pipeline asks about mail on its way in,
 * at the SMTP stage where it can be answered — who connects, what they
 * claim (HELO, AUTH, MAIL, RCPT), what they send (the content as it
 * streams), and at the end of data, what depends on all of it (DMARC after
 * SPF and DKIM). Postfix's smtpd_*_restrictions and maddy's check modules
 * are the models. A check decides; it never writes the spool, never talks
 * to the client and does no I/O but the lookups and filter connections it
 * is given.
 *
 * Each check gets its own state per connection (`open`), and per message
 * (`CheckSession.message`). Every stage answers with a `CheckResult` or
 * nothing (accept, nothing to add).
 */

/** A value, or a promise of it: a stage may answer at once or later. */
export type Awaitable<T> = T | Promise<T>;

export interface Check {
  /** Short, stable, lower-case name ("relay", "spf", "milter:rspamd"): log fields and A-R ordering. */
  readonly name: string;
  /** Names of the checks whose end-of-data results this one reads (DMARC: ["spf", "dkim"]). */
  readonly after?: readonly string[];
  /** Per-connection state; may refuse at connect through `connect()`. */
  open(client: ClientFacts): Awaitable<CheckSession>;
}

export interface CheckSession {
  connect?(): Awaitable<CheckResult | void>;
  helo?(session: SessionFacts, name: string): Awaitable<CheckResult | void>;
  /** An AUTH exchange ended: who logged in, or a failure (rate limits, bans). */
  auth?(session: SessionFacts, outcome: AuthOutcome): Awaitable<CheckResult | void>;
  mail?(session: SessionFacts, from: Mailbox | null, params: MailParameters): Awaitable<CheckResult | void>;
  rcpt?(session: SessionFacts, tx: TransactionFacts, to: Mailbox, params: RcptParameters): Awaitable<CheckResult | void>;
  /** DATA or the first BDAT: this check's observer of the message, if it wants one. */
  message?(session: SessionFacts, tx: TransactionFacts): Awaitable<MessageCheck | undefined>;
  /** The transaction ended without a message (RSET, refusal) — milter's abort. */
  reset?(): void;
  /** The connection ended. */
  close?(): Awaitable<void>;
}

export interface MessageCheck {
  /**
   * The content as it streams to the spool, header section first, CRLF line
   * ends — never a buffered copy. Returning a promise holds the stream back
   * (back-pressure for a filter connection).
   */
  body?(chunk: Buffer): Awaitable<void>;
  /**
   * All content received. `header` is the parsed header section (bounded by
   * limits.headerSize); `earlier` holds the end-of-data results of the checks
   * named in `Check.after`, by name.
   */
  endOfData(header: HeaderFields, earlier: ReadonlyMap<string, CheckResult>): Awaitable<CheckResult | void>;
  /** The message will not be stored (refused by another check, size, disconnect). */
  abort?(): void;
}

/** What a check decides. Absent means accept. */
export type Verdict =
  | { readonly action: "accept" }
  /** Refuse permanently: a 5xx Reply with an enhanced code, generic text for the peer. */
  | { readonly action: "reject"; readonly reply: Reply }
  /** Refuse for now: a 4xx Reply with an enhanced code. */
  | { readonly action: "tempfail"; readonly reply: Reply }
  /** Accept, and put the message on hold for a person to look at (Postfix HOLD). */
  | { readonly action: "quarantine"; readonly reason: string }
  /** Answer 250 and store nothing (a milter's SMFIR_DISCARD). */
  | { readonly action: "discard"; readonly reason: string };

export interface CheckResult {
  readonly verdict?: Verdict;
  /** Why, for the log line (never sent to the peer). */
  readonly reason?: string;
  /** Header fields to put at the top of the message, in order. */
  readonly headers?: readonly HeaderField[];
  /** Changes to the header section as received (a milter's chgheader/insheader/delete). */
  readonly headerEdits?: readonly HeaderEdit[];
  /** RFC 8601 resinfo fragments ("spf=pass smtp.mailfrom=example.org") for the one Authentication-Results field. */
  readonly authResults?: readonly string[];
  /** Envelope recipients to add or remove at end of data (a milter's addrcpt/delrcpt). */
  readonly recipients?: { readonly add?: readonly string[]; readonly remove?: readonly string[] };
  /** Local delivery into this Maildir++ folder instead of the inbox (e.g. "Junk"). */
  readonly folder?: string;
  /**
   * Seal the message with ARC (RFC 8617) because it will be forwarded: the intake makes the set
   * over the header section as stored, with this server's Authentication-Results field.
   */
  readonly arcSeal?: ArcSealRequest;
  /**
   * What the check found, for the checks that name it in `after` (DMARC reads SPF's and DKIM's
   * outcomes here): read by checks only, never stored or sent.
   */
  readonly findings?: unknown;
}

/** What an ARC set for a forwarded message needs besides the message and the Authentication-Results field. */
export interface ArcSealRequest {
  /** The sealing domain (the forwarding alias's), whose RSA key in dkim.domains signs. */
  readonly domain: string;
  /** This server's validation of the chain the message arrived with: the new set's cv=. */
  readonly chainValidation: "none" | "pass" | "fail";
  /** The relaxed/sha256 body hash (bh=), computed while the message streamed in. */
  readonly bodyHash: string;
}

export type { HeaderEdit, HeaderField, ReceivedField } from "../mail/header-field.ts";

/**
 * The header section as stored, in order: this server's Received: field
 * first, then the client's fields, then (on submission) the Message-ID: and
 * Date: Petrel added. Header edits index it. Bounded by limits.headerSize.
 */
export type HeaderFields = readonly ReceivedField[];

/** Who connected, as known at connect time (after PROXY protocol). */
export interface ClientFacts {
  readonly address: string;
  readonly port: number;
  /** The listener's address and port the client reached. */
  readonly localAddress: string;
  readonly localPort: number;
  readonly role: ListenerRole;
  /** TLS from the first byte (port 465). */
  readonly tls: TlsFacts | null;
}

export interface TlsFacts {
  readonly version: string;
  readonly cipher: string;
}

/** What the session knows at a stage: the client, and what it said so far. */
export interface SessionFacts {
  readonly client: ClientFacts;
  readonly helo: string | null;
  readonly esmtp: boolean;
  readonly tls: TlsFacts | null;
  readonly authUser: string | null;
}

export interface AuthOutcome {
  readonly mechanism: string;
  /** The authorization identity on success, null on failure. */
  readonly user: string | null;
}

/** The transaction so far (RFC 5321 §3.3). */
export interface TransactionFacts {
  /** The queue id, from DATA on (the intake opens the message in the spool then); absent before. */
  readonly queueId?: string;
  readonly mailFrom: Mailbox | null;
  readonly mailParams: MailParameters;
  readonly recipients: readonly { readonly mailbox: Mailbox; readonly params: RcptParameters }[];
}
