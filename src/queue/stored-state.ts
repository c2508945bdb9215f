import type { MessageState, RecipientState } from "./queue-state.ts";

/**
 * How a message's state is kept at rest, the same in every queue store:
 * the columns a store indexes and counts, derived from the recipients.
 */

/** The aggregate a waiting recipient counts in; null when it is final. */
export function waitingStatus(r: RecipientState): "queued" | "deferred" | null {
  if (r.status === "deferred") return "deferred";
  return r.status === "queued" || r.status === "delivering" ? "queued" : null;
}

/** The earliest next attempt of a waiting recipient, or null. */
export function dueOf(state: MessageState): number | null {
  let due = Infinity;
  for (const r of state.recipients) if (waitingStatus(r) !== null) due = Math.min(due, r.nextAttempt);
  return due === Infinity ? null : due;
}

/** Never tried yet (Postfix's incoming queue) or tried (deferred). */
export function triedOf(state: MessageState): boolean {
  return state.recipients.some((r) => r.attempts > 0);
}

/** The recipients as read back: a pending `retry --all` (`retryAt`) applied to the waiting ones. */
export function restoreRecipients(json: string, retryAt: number | null): RecipientState[] {
  const recipients = JSON.parse(json) as RecipientState[];
  for (const r of recipients) {
    // "delivering" exists only in memory: a state saved mid-delivery is read back as waiting.
    if (r.status === "delivering") r.status = "queued";
    if (retryAt !== null && waitingStatus(r) !== null) r.nextAttempt = Math.min(r.nextAttempt, retryAt);
  }
  return recipients;
}
