import type { Logger } from "pino";
import type { Now } from "../../mail/clock.ts";
import type { ListenerRole } from "../../mail/envelope.ts";
import { clientNetwork, networkMatcher } from "../../mail/networks.ts";
import { reply, type Reply } from "../../smtp/reply.ts";
import type { Check, CheckResult, CheckSession, ClientFacts, SessionFacts } from "../check.ts";
import { RateCounters, type RateCountersStats } from "../rate-counters.ts";

/**
 * Rates per client and per authenticated user — what Postfix's anvil
 * counts for smtpd_client_connection_rate_limit, _message_rate_limit and
 * _recipient_rate_limit, plus the same per login, so that a stolen password
 * does not turn into thousands of messages a minute.
 *
 * As in Postfix, every request counts, refused or not ("regardless of
 * whether or not Postfix actually accepts"), and the request that takes the
 * rate over the limit is refused:
 *   - a connection: 421 4.7.0 instead of the greeting (the connection closes);
 *   - MAIL: 450 4.7.1 "too much mail" (Postfix's reply; the client may retry later);
 *   - RCPT: 450 4.7.1 "too many recipients" (the recipients accepted so far stay).
 * Client limits count per listener kind (mx, or submission for ports 587
 * and 465 together), by client address — an IPv6 client by its /64
 * (`ipv6Prefix`); the `exempt` networks are not counted (Postfix's
 * smtpd_client_event_limit_exceptions). User limits count the login
 * whichever address and listener it comes from; `exemptUsers` are not
 * counted. A limit of 0 is off.
 */

export interface EventLimits {
  /** Connections per window (0 = no limit). */
  readonly connections?: number;
  /** MAIL commands per window. */
  readonly messages: number;
  /** RCPT commands per window. */
  readonly recipients: number;
  /** The window, ms. */
  readonly window: number;
}

export interface RateLimitSettings {
  /** Per client, on mx listeners. */
  readonly mx: EventLimits & { readonly connections: number };
  /** Per client, on submission and submissions listeners. */
  readonly submission: EventLimits & { readonly connections: number };
  /** Per authenticated user, on every listener. */
  readonly user: EventLimits & { readonly exempt: readonly string[] };
  /** Client networks the client limits do not apply to. */
  readonly exempt: readonly string[];
  /** IPv6 clients are counted by this prefix (64: a /64 is one client). */
  readonly ipv6Prefix: number;
  /** Most keys (client networks and users) remembered. */
  readonly trackedKeys: number;
}

export interface RateLimitsDeps {
  readonly log: Logger;
  readonly clock: Now;
}

type Group = "mx" | "submission" | "user";
type EventKind = "connections" | "messages" | "recipients";

function groupOf(role: ListenerRole): "mx" | "submission" {
  return role === "mx" ? "mx" : "submission";
}

export class RateLimits implements Check {
  readonly name = "rate-limits";
  private readonly settings: RateLimitSettings;
  private readonly log: Logger;
  private readonly counters: RateCounters;
  private readonly exempt: (ip: string) => boolean;
  private readonly exemptUsers: Set<string>;
  /** The keys that went over their limit in the current window, so that each is logged once per window. */
  private readonly reported = new Map<string, number>();
  private readonly clock: Now;

  constructor(settings: RateLimitSettings, deps: RateLimitsDeps) {
    this.settings = settings;
    this.log = deps.log;
    this.clock = deps.clock;
    this.counters = new RateCounters({ maxKeys: settings.trackedKeys, clock: deps.clock });
    this.exempt = networkMatcher(settings.exempt);
    this.exemptUsers = new Set(settings.user.exempt.map((u) => u.toLowerCase()));
  }

  /** Keys tracked (for tests and the admin view). */
  stats(): RateCountersStats {
    return this.counters.stats();
  }

  open(client: ClientFacts): CheckSession {
    const group = groupOf(client.role);
    const network = this.exempt(client.address) ? null : clientNetwork(client.address, this.settings.ipv6Prefix);
    return {
      connect: () => {
        if (network === null) return;
        return this.count(group, "connections", network, () => tooManyConnections(client.address));
      },
      mail: (session) =>
        (network === null ? undefined : this.count(group, "messages", network, () => tooMuchMail(client.address))) ??
        this.countUser(session, "messages", (user) => tooMuchMail(user)),
      rcpt: (session) =>
        (network === null ? undefined : this.count(group, "recipients", network, () => tooManyRecipients(client.address))) ??
        this.countUser(session, "recipients", (user) => tooManyRecipients(user)),
    };
  }

  private countUser(session: SessionFacts, kind: "messages" | "recipients", refusal: (who: string) => Reply): CheckResult | undefined {
    const user = session.authUser?.toLowerCase();
    if (user === undefined || this.exemptUsers.has(user)) return undefined;
    return this.count("user", kind, user, () => refusal(user));
  }

  /** Count one event; a refusal when it takes the key over its limit. */
  private count(group: Group, kind: EventKind, who: string, refusal: () => Reply): CheckResult | undefined {
    const limits = this.settings[group];
    const limit = limits[kind] ?? 0;
    if (limit <= 0) return undefined;
    // Short keys: each costs memory for as long as it is tracked.
    const key = `${group[0]}${kind[0]} ${who}`;
    const rate = this.counters.hit(key, limits.window);
    if (rate <= limit) return undefined;
    const seconds = limits.window / 1000;
    const count = Math.ceil(rate);
    this.report(key, limits.window, { group, kind, key: who, count, limit, window: seconds });
    return {
      verdict: { action: "tempfail", reply: refusal() },
      reason: `${kind} rate limit: ${count} from ${who} in ${seconds} s on ${group}, limit ${limit}`,
    };
  }

  /** One warning per key and window, like Postfix's "rate limit exceeded" line, not one per refused command. */
  private report(key: string, window: number, fields: Record<string, unknown>): void {
    const index = Math.floor(this.clock.now() / window);
    if (this.reported.get(key) === index) return;
    this.reported.delete(key);
    this.reported.set(key, index);
    while (this.reported.size > this.settings.trackedKeys) this.reported.delete(this.reported.keys().next().value as string);
    this.log.warn(fields, `${fields.kind} rate limit exceeded`);
  }
}

function tooManyConnections(ip: string): Reply {
  return reply(421, "4.7.0", `Error: too many connections from ${ip}; try again later`);
}

function tooMuchMail(from: string): Reply {
  return reply(450, "4.7.1", `Error: too much mail from ${from}; try again later`);
}

function tooManyRecipients(from: string): Reply {
  return reply(450, "4.7.1", `Error: too many recipients from ${from}; try again later`);
}
