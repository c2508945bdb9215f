import type { QueueId } from "../spool/spool.ts";
import type { RecipientKind } from "./ports.ts";

/**
 * The delivery state of each queued message, per recipient. The spool holds
 * what was accepted (never changed); this holds what has happened to it
 * since — in the queue manager's memory while it works on a message, and in
 * the queue store (queue-store.ts) otherwise.
 *
 * Recipient states:
 *   queued → delivering → delivered | deferred | bounced
 *   deferred → delivering (on retry)
 * "delivering" exists only in memory: a state stored mid-delivery is read
 * back as "queued" (delivery is at-least-once, as in every MTA).
 */

export type RecipientStatus = "queued" | "delivering" | "deferred" | "delivered" | "bounced";

export interface AttemptRecord {
  readonly at: number;
  readonly status: "delivered" | "deferred" | "failed";
  readonly enhanced?: string;
  readonly diagnostic?: string;
}

export interface RecipientState {
  /** Where it is delivered: a local mailbox or an external address (after alias expansion). */
  readonly address: string;
  /** The envelope recipient it came from (Final-Recipient in a DSN). */
  readonly original: string;
  /** A local mailbox, or an address elsewhere (relayed or forwarded by an alias). */
  readonly kind: RecipientKind;
  status: RecipientStatus;
  attempts: number;
  /** When it is due next (ms since epoch). */
  nextAttempt: number;
  lastError?: { enhanced: string; diagnostic: string; at: number; remoteMta?: string; bounceStatus?: string };
  /** The last few attempts, newest last (bounded). */
  history: AttemptRecord[];
  /** A delay warning DSN was sent. */
  delayWarned?: boolean;
}

export interface MessageState {
  readonly id: QueueId;
  /** When the message was accepted (ms). */
  readonly arrival: number;
  held: boolean;
  /** Why a check quarantined it on arrival; cleared when a person holds or releases it. */
  holdReason?: string;
  recipients: RecipientState[];
}

export const HISTORY_LIMIT = 10;

export function isFinal(r: RecipientState): boolean {
  return r.status === "delivered" || r.status === "bounced";
}
