import type { Mailbox } from "../../mail/envelope.ts";
import { formatMailbox } from "../../smtp/address.ts";
import type { RecipientResolution } from "../../accounts/account-store.ts";
import type { Check, CheckResult } from "../check.ts";
import { reject, tempfail } from "../replies.ts";

/**
 * Who may send mail where, asked at RCPT (Postfix's
 * reject_unauth_destination and reject_unlisted_recipient): mail for a
 * domain that is not ours is accepted only from an authenticated client —
 * Petrel is never an open relay — and a local recipient must exist now, so
 * an unknown one is refused in the dialogue (550 5.1.1) instead of being
 * bounced later to a possibly forged sender (backscatter).
 */

/** The lookups a recipient decision may make (answered by the account store). */
export interface RecipientDirectory {
  isLocalDomain(domain: string): Promise<boolean>;
  resolveRecipient(address: string): Promise<RecipientResolution>;
}

export function relayCheck(directory: RecipientDirectory): Check {
  return {
    name: "relay",
    open: () => ({
      rcpt: async (session, _tx, to) => {
        try {
          return await recipientDecision(to, session.authUser, directory);
        } catch (err) {
          return tempfail(451, "4.3.0", "Error: temporary lookup failure, try again later", `recipient lookup failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      },
    }),
  };
}

/** RCPT TO decision; undefined means accept. */
export async function recipientDecision(to: Mailbox, authUser: string | null, directory: RecipientDirectory): Promise<CheckResult | undefined> {
  const address = formatMailbox(to);
  if (await directory.isLocalDomain(to.domain)) {
    const resolution = await directory.resolveRecipient(address);
    if (resolution.kind === "unknown") return reject(550, "5.1.1", `<${address}>: Recipient address rejected: no such user here`, resolution.reason);
    return undefined;
  }
  if (authUser !== null) return undefined;
  return reject(554, "5.7.1", `<${address}>: Relay access denied`, "not a local domain and the client is not authenticated");
}
