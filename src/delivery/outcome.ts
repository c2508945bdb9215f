import type { Readable } from "node:stream";
import type { Envelope } from "../smtp/envelope.ts";

/**
 * What a delivery agent reports for one recipient. Agents carry a message
 * and say what happened; the queue manager alone decides what happens next
 * (retry, bounce, done).
 */
export type DeliveryOutcome =
  | { readonly status: "delivered"; readonly detail?: string }
  /** Temporary failure (4xx class): the queue retries later. */
  | { readonly status: "deferred"; readonly enhanced: string; readonly diagnostic: string; readonly remoteMta?: string }
  /** Permanent failure (5xx class): the queue bounces. */
  | { readonly status: "failed"; readonly enhanced: string; readonly diagnostic: string; readonly remoteMta?: string };

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
  /** Outcomes in the order of `request.recipients`. Never throws for a delivery problem: it reports it. */
  deliver(request: DeliveryRequest): Promise<DeliveryOutcome[]>;
}
