import type { Envelope } from "../smtp/envelope.ts";
import type { RecipientState } from "./queue-state.ts";
import type { RecipientResolution } from "../accounts/account-store.ts";

export type { RecipientResolution };

/**
 * Turning an envelope into delivery work: each envelope recipient is
 * resolved (aliases, catch-all, sub-addressing) into the mailboxes and
 * external addresses it stands for. The same target reached twice is
 * delivered once. A local recipient that no longer resolves (removed since
 * RCPT) bounces with 5.1.1 rather than disappearing.
 */

export type RecipientResolver = (address: string) => Promise<RecipientResolution>;

export async function fanOut(envelope: Envelope, resolve: RecipientResolver, now: number): Promise<RecipientState[]> {
  const out: RecipientState[] = [];
  const seen = new Set<string>();
  const add = (address: string, original: string, kind: "mailbox" | "forward"): RecipientState | null => {
    const key = address.toLowerCase();
    if (seen.has(key)) return null;
    seen.add(key);
    const r: RecipientState = { address, original, kind, status: "queued", attempts: 0, nextAttempt: now, history: [] };
    out.push(r);
    return r;
  };
  for (const rcpt of envelope.recipients) {
    const res = await resolve(rcpt.address);
    if (res.kind === "not-local") {
      add(rcpt.address, rcpt.address, "forward");
    } else if (res.kind === "unknown") {
      const r = add(rcpt.address, rcpt.address, "mailbox");
      if (r) {
        r.status = "bounced";
        r.lastError = { enhanced: "5.1.1", diagnostic: `550 5.1.1 <${rcpt.address}>: ${res.reason}`, at: now };
      }
    } else {
      for (const t of res.targets) add(t.address, rcpt.address, t.type);
    }
  }
  return out;
}
