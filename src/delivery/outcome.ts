import type { Readable } from "node:stream";
import type { Envelope } from "../smtp/envelope.ts";

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
export type DeliveryOutcome =
  | {
    readonly status: "delivered";
    readonly dsn: SuccessReport;
    /** What the receiving side said (a server's reply, or where the file went). */
    readonly detail?: string;
    /** The server that took it (a DSN's Remote-MTA). */
    readonly remoteMta?: string;
  }
  /** Temporary failure (4xx class): the queue retries later. */
  | { readonly status: "deferred"; readonly enhanced: string; readonly diagnostic: string; readonly remoteMta?: string }
  /** Permanent failure (5xx class): the queue bounces. */
  | { readonly status: "failed"; readonly enhanced: string; readonly diagnostic: string; readonly remoteMta?: string };

/** Outcomes keyed by recipient address (as given in `DeliveryRequest.recipients`). */
export type DeliveryOutcomes = ReadonlyMap<string, DeliveryOutcome>;

/** One message to carry to some of its recipients. */
export interface DeliveryRequest {
  readonly queueId: string;
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

/** The same outcome for every recipient (a problem before any of them could be tried). */
export function sameOutcome(recipients: readonly string[], outcome: DeliveryOutcome): Map<string, DeliveryOutcome> {
  return new Map(recipients.map((r) => [r, outcome]));
}
