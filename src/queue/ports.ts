import type { Readable } from "node:stream";
import type { Envelope } from "../mail/envelope.ts";
import type { QueueId } from "../spool/spool.ts";
import type { RecipientResolution } from "../accounts/account-store.ts";

/**
 * The contract between the queue manager and everything it drives: the
 * agents that carry mail (delivery/), the router that picks one per
 * recipient, the resolver that expands recipients, and the sender of DSNs.
 * The queue owns these types; delivery/ implements them and mta.ts wires
 * them, so the queue never imports an agent and no agent reaches back into
 * the queue's state.
 */

/** What carries mail to a recipient: Maildir, an LMTP server, or SMTP to another MTA. */
export type Transport = "local" | "lmtp" | "remote";

/** A local mailbox, or an address elsewhere (relayed, or forwarded by an alias). */
export type RecipientKind = "mailbox" | "forward";

/**
 * Who reports a recipient's success to a sender who asked for it (RFC 3461
 * NOTIFY=SUCCESS), as the agent that carried the message knows it:
 * - "final": the message reached the mailbox (Maildir, or an LMTP server
 *   that does not offer DSN) — we report Action: delivered;
 * - "relayed": handed to a next hop that does not offer DSN, so nobody after
 *   us can report — we report Action: relayed;
 * - "passed": handed on with NOTIFY, ORCPT, RET and ENVID (RFC 3461 §4) to a
 *   next hop that offers DSN — an SMTP relay, or an LMTP server, which is
 *   then the final delivery point — so the report is its to send, not ours.
 * This is Postfix's reading too (smtp_rcpt.c: no success notice when the
 * server announced DSN; "delivered" for an LMTP server without it).
 */
export type SuccessReport = "final" | "relayed" | "passed";

/**
 * What a delivery agent reports for one recipient. Agents carry a message
 * and say what happened; the queue manager alone decides what happens next
 * (retry, bounce, done, which DSN).
 */
export type DeliveryOutcome = (
  | {
    readonly status: "delivered";
    readonly dsn: SuccessReport;
    /** What the receiving side said (a server's reply, or where the file went). */
    readonly detail?: string;
    /** The server that took it (a DSN's Remote-MTA). */
    readonly remoteMta?: string;
  }
  /**
   * Temporary failure (4xx class): the queue retries later. `bounceStatus`: the status the
   * bounce gives when the message expires with this as its last error, instead of 4.4.7
   * (RFC 8689 §5: a message REQUIRETLS could not be honoured for bounces with 5.7.30).
   */
  | { readonly status: "deferred"; readonly enhanced: string; readonly diagnostic: string; readonly remoteMta?: string; readonly bounceStatus?: string }
  /** Permanent failure (5xx class): the queue bounces. */
  | { readonly status: "failed"; readonly enhanced: string; readonly diagnostic: string; readonly remoteMta?: string }
) & SessionFacts;

/** The session an outcome was decided on, when there was one (the message trace shows it). */
export interface SessionFacts {
  /** The server's IP address (or the LMTP socket's path). */
  readonly remoteAddress?: string;
  /** The TLS version of the session ("TLSv1.3"); absent in plain text. */
  readonly tls?: string;
}

/** Outcomes keyed by recipient address (as given in `DeliveryRequest.recipients`). */
export type DeliveryOutcomes = ReadonlyMap<string, DeliveryOutcome>;

/** One message to carry to some of its recipients. */
export interface DeliveryRequest {
  readonly queueId: QueueId;
  readonly envelope: Envelope;
  /** The addresses this request is for (already resolved: a local mailbox or an external address). */
  readonly recipients: readonly string[];
  /** For each of `recipients`, the envelope recipient it was received as (before sub-address stripping and alias expansion), when known. */
  readonly originalRecipients?: ReadonlyMap<string, string>;
  /** A fresh stream of the spooled message (CRLF line ends) on each call. */
  body(): Readable;
}

export interface DeliveryAgent {
  /**
   * An outcome for each recipient of the request, by address; a recipient
   * left out counts as deferred. Never throws for a delivery problem: it
   * reports it.
   */
  deliver(request: DeliveryRequest): Promise<DeliveryOutcomes>;
}

/** Which agent carries mail to an address, and the destination it counts against for concurrency. */
export interface Route {
  readonly transport: Transport;
  /** Concurrency and batching key: the domain (or LMTP server) mail goes to. */
  readonly destination: string;
  readonly agent: DeliveryAgent;
}

export interface Router {
  route(address: string, kind: RecipientKind): Route;
}

/** Where mail for an envelope recipient goes (aliases, catch-all, sub-addressing), asked of the account store. */
export type RecipientResolver = (address: string) => Promise<RecipientResolution>;

/** RFC 3464 §2.3.3 Action values. */
export type DsnAction = "failed" | "delayed" | "delivered" | "relayed" | "expanded";

/** What a DSN says about one recipient (RFC 3464 §2.3). */
export interface DsnRecipient {
  /** The recipient as in the envelope (→ Final-Recipient). */
  readonly address: string;
  /** "type;address" as kept in the envelope from ORCPT (→ Original-Recipient). */
  readonly orcpt?: string;
  readonly action: DsnAction;
  /** RFC 3463 enhanced code, e.g. "5.1.1". */
  readonly status: string;
  /** The remote reply ("550 5.1.1 <bob@x>: no such user") or a local reason (→ Diagnostic-Code). */
  readonly diagnostic?: string;
  /** Host name of the server that answered (→ Remote-MTA: dns; host). */
  readonly remoteMta?: string;
  readonly lastAttempt?: Date;
  /** For delay warnings (→ Will-Retry-Until). */
  readonly willRetryUntil?: Date;
}

/**
 * Sends a DSN for a message: composes it, with `original()` (the message as
 * stored, the same stream agents get) for its third part, and puts it into
 * the queue through the intake, which tells the queue. Returns the new queue
 * id, or null when no DSN was due.
 */
export type DsnSender = (
  id: QueueId, envelope: Envelope, arrival: Date, recipients: readonly DsnRecipient[], original: () => Readable,
) => Promise<QueueId | null>;

/** A message Petrel composed itself (a DSN), as it is handed to the intake. */
export interface LocalMessage {
  /** The reverse-path; "" for a DSN. */
  readonly mailFrom: string;
  readonly recipients: readonly string[];
  /** The whole message, CRLF line ends. */
  readonly content: Buffer;
  /** Some octet is ≥ 0x80: sent with BODY=8BITMIME. */
  readonly needs8bit: boolean;
  readonly smtputf8: boolean;
}

/** The intake's door for messages Petrel composes: resolves with the queue id once the message is durable and queued. */
export type SubmitMessage = (message: LocalMessage) => Promise<QueueId>;
