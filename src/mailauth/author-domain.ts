/**
 * The author domain (RFC 9989 §3.2.2, RFC 7489 §3.2): the domain of the mailboxes in the From
 * field — the domain a reader sees, whose DKIM keys sign a message Petrel sends and whose DMARC
 * policy applies to one it receives.
 */
import addressparser from "nodemailer/lib/addressparser";
import { normalizeDomain } from "../mail/address.ts";

/**
 * The one domain of the mailboxes of the From field, lower-case A-labels; undefined when there
 * is no From field, more than one (RFC 5322 §3.6 allows one), no mailbox, or mailboxes in more
 * than one domain — no single domain stands behind such a message.
 */
export function authorDomain(fromValues: readonly string[]): string | undefined {
  if (fromValues.length !== 1) return undefined;
  let found: string | undefined;
  for (const mailbox of addressparser(fromValues[0].replace(/\r?\n/g, ""), { flatten: true })) {
    const at = mailbox.address.lastIndexOf("@");
    const domain = at === -1 ? undefined : normalizeDomain(mailbox.address.slice(at + 1));
    if (domain === undefined || (found !== undefined && found !== domain)) return undefined;
    found = domain;
  }
  return found;
}
