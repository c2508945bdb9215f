import type { Logger } from "pino";
import type { ListenerRole } from "../../mail/envelope.ts";
import type { ServiceAddress } from "../../mail/service-address.ts";

/** One configured filter (an entry of `milters:`) and what Petrel tells every filter. */

export type MilterDefaultAction = "accept" | "tempfail";

export interface MilterSettings {
  /** Appears in logs and as the check's name, "milter:<name>". */
  readonly name: string;
  readonly address: ServiceAddress;
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
