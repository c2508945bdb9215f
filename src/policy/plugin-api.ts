import type { Logger } from "pino";
import type { Clock } from "../mail/clock.ts";
import type { Resolver } from "../dns/resolver.ts";
import type { RecordResolver } from "../dns/records.ts";
import type { Check } from "./check.ts";

/**
 * What a plugin is given and what it gives back — the whole API between
 * Petrel and a plugin module (README, "Plugins"). A plugin is a module
 * whose default export is a `CheckFactory`: called once at start-up with a
 * narrow context and the `options` of its `plugins:` entry, it returns the
 * `Check` the policy pipeline asks at every SMTP stage, like the built-in
 * checks. Plugins import these types only (`import type`), so the import
 * is erased when Node strips the types and a plugin file runs wherever it
 * is kept.
 */

export type * from "./check.ts";
export type { Mailbox, MailParameters, RcptParameters, ListenerRole } from "../mail/envelope.ts";
export type { Reply } from "../smtp/reply.ts";

/** DNS lookups through Petrel's resolver and its cache: MX, A/AAAA, TXT, and raw RRsets (A, AAAA, MX, TXT, PTR, CNAME). */
export type PluginResolver = Pick<Resolver, "resolveMx" | "resolveAddresses" | "resolveTxt"> & RecordResolver;

/** What a plugin may use of Petrel: no more, so that a plugin cannot reach into the server's state. */
export interface PluginContext {
  /** A child of Petrel's logger, with `plugin` (the module's file name) on every line. */
  readonly log: Logger;
  readonly resolver: PluginResolver;
  /** The time, and timers that do not keep the process alive (injected: tests move it by hand). */
  readonly clock: Clock;
  /** This server's host name (the `hostname` setting). */
  readonly hostname: string;
}

/** The default export of a plugin module. May be async; a throw stops start-up with a configuration error. */
export type CheckFactory = (context: PluginContext, options: unknown) => Check | Promise<Check>;
