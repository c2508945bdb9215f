import { formatMailbox } from "../../smtp/address.ts";
import type { Check } from "../check.ts";
import { reject } from "../replies.ts";

/**
 * Sender ownership on submission, asked at MAIL (Postfix's
 * reject_sender_login_mismatch): an authenticated user may only use the
 * sender addresses they own. The null sender is allowed (it only ever
 * suppresses bounces); mail on an mx listener is not checked here.
 */
export function senderLoginCheck(mayUse: (user: string, address: string) => boolean): Check {
  return {
    name: "sender-login",
    open: (client) => client.role === "mx" ? {} : {
      mail: (session, from) => {
        const user = session.authUser;
        if (from === null || user === null) return undefined;
        const address = formatMailbox(from);
        if (mayUse(user, address)) return undefined;
        return reject(553, "5.7.1", `<${address}>: Sender address rejected: not owned by user ${user}`, `${user} may not send as ${address}`);
      },
    },
  };
}
