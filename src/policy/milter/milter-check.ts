import type { Logger } from "pino";
import type { Check, CheckSession, ClientFacts } from "../check.ts";
import type { ListenerRole } from "../../mail/envelope.ts";
import type { MilterAddress } from "./address.ts";
import { MilterSession } from "./milter-session.ts";

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

export type MilterDefaultAction = "accept" | "tempfail";

export interface MilterSettings {
  /** Appears in logs and as the check's name, "milter:<name>". */
  readonly name: string;
  readonly address: MilterAddress;
  /** Milliseconds to connect (Postfix milter_connect_timeout, 30 s). */
  readonly connectTimeout: number;
  /** Milliseconds for negotiation and each envelope step (milter_command_timeout, 30 s). */
  readonly commandTimeout: number;
  /** Milliseconds for each content step and the end of message (milter_content_timeout, 300 s). */
  readonly endOfMessageTimeout: number;
  readonly defaultAction: MilterDefaultAction;
  /** Only connections to listeners of these roles are filtered; all when absent (OpenDKIM signing: ["submission", "submissions"]). */
  readonly listeners?: readonly ListenerRole[];
}

export interface MilterContext {
  /** The server's name: macro `j`. */
  readonly hostname: string;
  /** limits.headerSize: the most header bytes held while splitting fields for the filter. */
  readonly headerSizeLimit: number;
  readonly log: Logger;
  /** The longest the pipeline waits for one stage of a check (policy.timeout); a filter's default action applies before it runs out. */
  readonly stageTimeout?: number;
}

export function milterCheck(settings: MilterSettings, context: MilterContext): Check {
  return {
    name: `milter:${settings.name}`,
    async open(client: ClientFacts): Promise<CheckSession> {
      if (settings.listeners !== undefined && !settings.listeners.includes(client.role)) return {};
      return MilterSession.start(settings, context, client);
    },
  };
}
