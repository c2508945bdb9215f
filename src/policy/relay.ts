import { reply, type Reply } from "../smtp/reply.ts";
import type { Mailbox } from "../mail/envelope.ts";
import { formatMailbox } from "../smtp/address.ts";
import type { RecipientResolution } from "../accounts/account-store.ts";

/**
 * Who may send mail where: the questions a session asks before it accepts a
 * recipient or a sender. Petrel is never an open relay: mail for a domain
 * that is not ours is accepted only from an authenticated client.
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

/** The lookups a recipient decision may make (answered by the account store). */
export interface RecipientDirectory {
  isLocalDomain(domain: string): Promise<boolean>;
  resolveRecipient(address: string): Promise<RecipientResolution>;
}

/**
 * RCPT TO decision; undefined means accept. A local recipient must exist
 * now, so an unknown one is refused in the dialogue (550 5.1.1) instead of
 * being bounced later to a possibly forged sender (backscatter).
 */
export async function recipientDecision(to: Mailbox, authUser: string | null, directory: RecipientDirectory): Promise<Reply | undefined> {
  const address = formatMailbox(to);
  if (await directory.isLocalDomain(to.domain)) {
    const resolution = await directory.resolveRecipient(address);
    if (resolution.kind === "unknown") return reply(550, "5.1.1", `<${address}>: Recipient address rejected: no such user here`);
    return undefined;
  }
  if (authUser !== null) return undefined;
  return reply(554, "5.7.1", `<${address}>: Relay access denied`);
}

/**
 * MAIL FROM decision on submission: an authenticated user may only use the
 * sender addresses they own (Postfix reject_sender_login_mismatch), unless
 * the check is turned off. The null sender is allowed (it only ever
 * suppresses bounces).
 */
export function senderDecision(
  from: Mailbox | null,
  authUser: string | null,
  mayUse: (user: string, address: string) => boolean,
  enforce: boolean,
): Reply | undefined {
  if (!enforce || from === null || authUser === null) return undefined;
  const address = formatMailbox(from);
  if (mayUse(authUser, address)) return undefined;
  return reply(553, "5.7.1", `<${address}>: Sender address rejected: not owned by user ${authUser}`);
}
