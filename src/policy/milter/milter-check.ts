import type { Check, CheckSession, ClientFacts } from "../check.ts";
import { MilterSession } from "./milter-session.ts";
import type { MilterContext, MilterSettings } from "./settings.ts";

export type { MilterContext, MilterDefaultAction, MilterSettings } from "./settings.ts";

/**
 * A mail filter (milter) as a check: Petrel speaks the Sendmail milter
 * protocol to an external filter — rspamd, OpenDKIM, ClamAV's milter — at
 * every SMTP stage, as Postfix's smtpd_milters does, and turns its answers
 * into verdicts, header edits and recipient changes.
 *
 * One connection to the filter per SMTP connection (libmilter closes its
 * side when the SMTP client leaves, so connections cannot be shared).
 * When the filter cannot be reached, or breaks the protocol, or is late,
 * `defaultAction` decides (Postfix's milter_default_action): "tempfail"
 * answers 451 4.7.1 at that stage and at every later one of the
 * connection, so the client retries later and nothing is lost; "accept"
 * goes on without the filter. Either way the failure is logged.
 */

export function milterCheck(settings: MilterSettings, context: MilterContext): Check {
  return {
    name: `milter:${settings.name}`,
    async open(client: ClientFacts): Promise<CheckSession> {
      if (settings.listeners !== undefined && !settings.listeners.includes(client.role)) return {};
      return MilterSession.start(settings, context, client);
    },
  };
}
