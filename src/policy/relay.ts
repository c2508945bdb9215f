import { reply, type Reply } from "../smtp/reply.ts";
import type { Mailbox } from "../smtp/envelope.ts";
import { formatMailbox } from "../smtp/address.ts";

/**
 * Who may send mail where: the questions a session asks before it accepts a
 * recipient or a sender. Petrel is never an open relay: mail for a domain
 * that is not ours is accepted only from an authenticated client.
 */

export type ListenerRole = "mx" | "submission" | "submissions";

export interface RelayPolicyInput {
  readonly localDomains: ReadonlySet<string>;
  readonly authUser: string | null;
}

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

export function isLocalDomain(domain: string, localDomains: ReadonlySet<string>): boolean {
  return localDomains.has(domain.toLowerCase());
}

/** RCPT TO decision; undefined means accept. */
export function recipientDecision(to: Mailbox, input: RelayPolicyInput): Reply | undefined {
  if (isLocalDomain(to.domain, input.localDomains)) return undefined;
  if (input.authUser !== null) return undefined;
  return reply(554, "5.7.1", `<${formatMailbox(to)}>: Relay access denied`);
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
