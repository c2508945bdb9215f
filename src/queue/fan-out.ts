import type { Envelope } from "../mail/envelope.ts";
import type { RecipientState } from "./queue-state.ts";
import type { RecipientKind, RecipientResolver } from "./ports.ts";

/**
 * Turning an envelope into delivery work: each envelope recipient is
 * resolved (aliases, catch-all, sub-addressing) into the mailboxes and
 * external addresses it stands for. The same target reached twice is
 * delivered once. A local recipient that no longer resolves (removed since
 * RCPT) bounces with 5.1.1 rather than disappearing. An address outside our
 * domains (relayed, or an alias's forward) is not forwarded when the message
 * already carries `maxReceived` Received: fields (RFC 5321 §6.3): it bounces
 * with 5.4.6 here instead of going round once more.
 */

export async function fanOut(envelope: Envelope, resolve: RecipientResolver, now: number, maxReceived?: number): Promise<RecipientState[]> {
  const looping = maxReceived !== undefined && envelope.hopCount !== undefined && envelope.hopCount >= maxReceived;
  const out: RecipientState[] = [];
  const seen = new Set<string>();
  const add = (address: string, original: string, kind: RecipientKind): RecipientState | null => {
    const key = address.toLowerCase();
    if (seen.has(key)) return null;
    seen.add(key);
    const r: RecipientState = { address, original, kind, status: "queued", attempts: 0, nextAttempt: now, history: [] };
    if (kind === "forward" && looping) {
      r.status = "bounced";
      r.lastError = { enhanced: "5.4.6", diagnostic: `mail forwarding loop: too many hops (${envelope.hopCount} Received fields, limit ${maxReceived}); not forwarded to <${address}>`, at: now };
    }
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
