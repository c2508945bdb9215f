import type { Logger } from "pino";
import type { Clock } from "../../mail/clock.ts";
import type { ListenerRole } from "../../mail/envelope.ts";
import { networkMatcher, unmapIpv4 } from "../../mail/networks.ts";
import type { RecordResolver } from "../../dns/records.ts";
import { reply, type Reply } from "../../smtp/reply.ts";
import type { Check, CheckResult, CheckSession, ClientFacts } from "../check.ts";
import { countsFor, isRefusalAnswer, reversedClient, type DnsblSite } from "../dnsbl-sites.ts";

/**
 * DNS blocklists and allowlists, weighed as postscreen does
 * (postscreen_dnsbl_sites, postscreen_dnsbl_threshold): when a client
 * connects, every configured zone is asked at once for its reversed address
 * (RFC 5782) through Petrel's resolver (cached); the weights of the sites
 * that list it add up, allowlists subtracting, and a score at or above the
 * threshold refuses it with 554 5.7.1 naming the list.
 *
 * Where: "rcpt" (the default) refuses each RCPT, as Postfix's
 * reject_rbl_client in smtpd_recipient_restrictions does: the sending MTA
 * gets a permanent answer per recipient and bounces at once to its sender,
 * who learns which list blocked them — a refusal of the greeting is read by
 * most MTAs as "this host is down", tried at the next MX and retried for
 * days before anyone hears of it. The lookups still start at connect, so
 * they are answered while the client says EHLO. "connect" refuses the
 * greeting instead (cheapest under a flood). An authenticated client is
 * never refused at RCPT.
 *
 * A DNS failure never blocks: a zone that fails or does not answer within
 * `timeout` counts 0 (logged), and while an allowlist's answer is missing a
 * client is not refused at all.
 */

export interface DnsblSettings {
  readonly sites: readonly DnsblSite[];
  /** A score at or above this is listed (postscreen_dnsbl_threshold). */
  readonly threshold: number;
  /** Longest wait for the answers, ms (postscreen_dnsbl_timeout). */
  readonly timeout: number;
  /** Where a listed client is refused. */
  readonly rejectAt: "connect" | "rcpt";
  /** The listeners whose clients are looked up (port 25 by default: submission clients log in from anywhere). */
  readonly roles: readonly ListenerRole[];
  /** Client networks never looked up. */
  readonly exempt: readonly string[];
}

export interface DnsblDeps {
  readonly resolver: RecordResolver;
  readonly clock: Pick<Clock, "now" | "schedule" | "cancel">;
  readonly log: Logger;
}

/** What the lists say about one client. */
export interface Listing {
  readonly score: number;
  /** The sites that list the client, in configuration order, with the answers that matched. */
  readonly listedBy: readonly { readonly site: DnsblSite; readonly answers: readonly string[] }[];
  /** Zones that failed or did not answer in time. */
  readonly failed: readonly string[];
  /** At or over the threshold, and no allowlist answer missing. */
  readonly blocked: boolean;
}

type ZoneAnswer = { kind: "answers"; addresses: string[] } | { kind: "none" } | { kind: "failed"; reason: string };

/** How often one zone's failures are logged as warnings. */
const FAILURE_LOG_INTERVAL = 60_000;

export class Dnsbl implements Check {
  readonly name = "dnsbl";
  private readonly settings: DnsblSettings;
  private readonly deps: DnsblDeps;
  private readonly exempt: (ip: string) => boolean;
  private readonly zones: readonly string[];
  private readonly lastFailureLog = new Map<string, number>();

  constructor(settings: DnsblSettings, deps: DnsblDeps) {
    this.settings = settings;
    this.deps = deps;
    this.exempt = networkMatcher(settings.exempt);
    this.zones = [...new Set(settings.sites.map((s) => s.zone))];
  }

  open(client: ClientFacts): CheckSession {
    if (this.zones.length === 0 || !this.settings.roles.includes(client.role) || this.exempt(client.address)) return {};
    let listing: Promise<Listing> | undefined;
    const lookup = () => (listing ??= this.lookup(client.address));
    if (this.settings.rejectAt === "connect") {
      return { connect: async () => this.verdict(client.address, await lookup()) };
    }
    return {
      connect: () => {
        // Started now, awaited at RCPT; a failure there is the runner's to report, not an unhandled rejection here.
        lookup().catch(() => {});
      },
      rcpt: async (session) => (session.authUser !== null ? undefined : this.verdict(client.address, await lookup())),
    };
  }

  /** Ask every zone at once; what answered within the timeout counts. Never rejects. */
  async lookup(address: string): Promise<Listing> {
    const reversed = reversedClient(address);
    if (reversed === undefined) return { score: 0, listedBy: [], failed: [], blocked: false };
    const answers = new Map<string, ZoneAnswer>();
    const queries = this.zones.map(async (zone) => {
      answers.set(zone, await this.ask(`${reversed}.${zone}`));
    });
    const { clock, log } = this.deps;
    let timer: unknown;
    const timedOut = new Promise<void>((resolve) => (timer = clock.schedule(resolve, this.settings.timeout)));
    await Promise.race([Promise.all(queries), timedOut]);
    clock.cancel(timer);

    const listedBy: { site: DnsblSite; answers: string[] }[] = [];
    const failed: string[] = [];
    let score = 0;
    let allowlistMissing = false;
    for (const zone of this.zones) {
      const a = answers.get(zone) ?? { kind: "failed", reason: `no answer within ${this.settings.timeout} ms` };
      if (a.kind === "failed") {
        failed.push(zone);
        this.logFailure(zone, address, a.reason);
        if (this.settings.sites.some((s) => s.zone === zone && s.weight < 0)) allowlistMissing = true;
      }
      if (a.kind !== "answers") continue;
      const refusals = a.addresses.filter(isRefusalAnswer);
      if (refusals.length > 0) this.logFailure(zone, address, `the list refused the query (${refusals.join(", ")}): it does not answer this resolver`);
      for (const site of this.settings.sites) {
        if (site.zone !== zone) continue;
        const matched = a.addresses.filter((x) => countsFor(site, x));
        if (matched.length === 0) continue;
        score += site.weight;
        listedBy.push({ site, answers: matched });
      }
    }
    const blocked = listedBy.length > 0 && score >= this.settings.threshold && !allowlistMissing;
    const fields = {
      client: address, score, threshold: this.settings.threshold, blocked,
      listedBy: listedBy.map((l) => ({ list: l.site.name, answers: l.answers, weight: l.site.weight })),
      ...(failed.length > 0 ? { failed: failed.map((z) => this.siteName(z)) } : {}),
    };
    if (blocked) log.info(fields, "client listed by DNS blocklists");
    else if (listedBy.length > 0) log.info(fields, "client on DNS lists, below the threshold");
    else log.debug(fields, "client on no DNS list");
    return { score, listedBy, failed, blocked };
  }

  private async ask(name: string): Promise<ZoneAnswer> {
    try {
      const r = await this.deps.resolver.resolveRecords(name, "A");
      switch (r.kind) {
        case "records":
          return { kind: "answers", addresses: r.records };
        case "nxdomain":
        case "nodata":
          return { kind: "none" };
        case "temporary":
        case "invalid":
          return { kind: "failed", reason: r.reason };
      }
    } catch (err) {
      return { kind: "failed", reason: err instanceof Error ? err.message : String(err) };
    }
  }

  private verdict(address: string, listing: Listing): CheckResult | undefined {
    if (!listing.blocked) return undefined;
    const site = blockingSite(listing);
    return {
      verdict: { action: "reject", reply: blocked(unmapIpv4(address), site.name) },
      reason: `listed by ${listing.listedBy.map((l) => `${l.site.name} (${l.answers.join(", ")})`).join(", ")}: score ${listing.score}, threshold ${this.settings.threshold}`,
    };
  }

  private siteName(zone: string): string {
    return this.settings.sites.find((s) => s.zone === zone)?.name ?? zone;
  }

  /** A failing list would log on every connection: a warning per zone per minute, the rest at debug. */
  private logFailure(zone: string, client: string, reason: string): void {
    const now = this.deps.clock.now();
    const last = this.lastFailureLog.get(zone);
    const fields = { list: this.siteName(zone), client, reason };
    if (last !== undefined && now - last < FAILURE_LOG_INTERVAL && now >= last) {
      this.deps.log.debug(fields, "DNS list lookup failed; not counted");
      return;
    }
    this.lastFailureLog.set(zone, now);
    this.deps.log.warn(fields, "DNS list lookup failed; not counted");
  }
}

/** The list named in the refusal: the listing site with the largest weight, the first of those in the configuration. */
function blockingSite(listing: Listing): DnsblSite {
  let best = listing.listedBy[0].site;
  for (const { site } of listing.listedBy) if (site.weight > best.weight) best = site;
  return best;
}

/** Postfix's reject_rbl_client text (rbl_reply_maps default) with the enhanced code of RFC 3463 §3.8. */
function blocked(address: string, list: string): Reply {
  return reply(554, "5.7.1", `Service unavailable; client [${address}] blocked using ${list}`);
}
