import type { Mailbox, Recipient } from "../mail/envelope.ts";
import { formatMailbox, parsePath } from "../smtp/address.ts";

/**
 * The envelope's recipients as the intake writes them: "<Postmaster>" made
 * a real address, and the changes a filter asked for at the end of data
 * (a milter's addrcpt and delrcpt) applied.
 */

/**
 * RFC 5321 §4.1.1.3: "<Postmaster>" without a domain means this host's
 * postmaster; we deliver it to postmaster at our first local domain.
 */
export function resolvePostmaster(to: Mailbox, primaryDomain: string): Mailbox {
  if (to.domain === "" && to.localPart.toLowerCase() === "postmaster") {
    return { localPart: "postmaster", domain: primaryDomain };
  }
  return to;
}

export interface RecipientChanges {
  readonly recipients: Recipient[];
  /** Added addresses that are no address (logged, never stored). */
  readonly invalid: string[];
  readonly added: string[];
  readonly removed: string[];
}

/**
 * `remove` drops recipients by address (case-insensitively); `add` appends
 * addresses ("a@b" or "<a@b>") not already there. Added recipients are
 * never refused: where they go is resolved when the queue takes the
 * message, like every recipient's.
 */
export function changeRecipients(
  recipients: readonly Recipient[], add: readonly string[], remove: readonly string[], primaryDomain: string,
): RecipientChanges {
  const gone = new Set(remove.map((a) => unbracket(a).toLowerCase()));
  const out = recipients.filter((r) => !gone.has(r.address.toLowerCase()));
  const removed = recipients.filter((r) => gone.has(r.address.toLowerCase())).map((r) => r.address);
  const invalid: string[] = [];
  const added: string[] = [];
  for (const a of add) {
    const text = a.trim();
    const path = parsePath(text.startsWith("<") ? text : `<${text}>`, { allowUtf8: true, allowNull: false });
    if (!path.ok || path.mailbox === null || path.rest.trim() !== "") {
      invalid.push(a);
      continue;
    }
    const address = formatMailbox(resolvePostmaster(path.mailbox, primaryDomain));
    if (out.some((r) => r.address.toLowerCase() === address.toLowerCase())) continue;
    out.push({ address });
    added.push(address);
  }
  return { recipients: out, invalid, added, removed };
}

function unbracket(a: string): string {
  const t = a.trim();
  return t.startsWith("<") && t.endsWith(">") ? t.slice(1, -1) : t;
}
