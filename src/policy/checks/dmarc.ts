import { normalizeDomain } from "../../mail/address.ts";
import { unmapIpv4 } from "../../mail/networks.ts";
import type { ArcOutcome } from "../../mailauth/arc.ts";
import type { DkimVerification } from "../../mailauth/dkim-verify.ts";
import { checkDmarc, type DmarcOutcome } from "../../mailauth/dmarc.ts";
import type { SpfOutcome } from "../../mailauth/spf.ts";
import type { Check, CheckResult, TransactionFacts } from "../check.ts";
import { reject, tempfail } from "../replies.ts";
import { arcOutcome } from "./arc.ts";
import {
  alignsWithLocal, checkedClients, exceptedClients, isLocalOrBelow, type AuthenticationOptions, type AuthenticationSettings, type QuarantineAction,
} from "./authentication.ts";
import { dkimFindings } from "./dkim.ts";
import { spfOutcome } from "./spf.ts";

/**
 * DMARC (RFC 9989, on mailauth) at the end of data, from what SPF, DKIM and ARC found: the
 * `dmarc=` resinfo, and the policy of the author domain enforced — p=reject refused with
 * `550 5.7.1` and the reason, p=quarantine delivered into the recipients' junk folder (or
 * marked with `X-Spam-Flag: YES`), per `authentication.dmarc` and the recipients' domains
 * (`authentication.domains`: a message is refused, or put in the junk folder, only when every
 * recipient's domain enforces that). Not enforced for clients in `exceptions`, nor when a
 * trusted forwarder's ARC chain vouches for the message (below).
 *
 * Spoofing of this server's own domains (`dmarc.localDomains: reject`): unauthenticated mail
 * on an mx listener whose From is a local domain (or below one) and that passes neither SPF nor
 * DKIM for that domain is refused whatever the domain publishes — no DMARC record, or p=none
 * while its owner collects reports. Mail from a local domain legitimately comes either from its
 * users, who log in, or from senders the domain's SPF record names or that sign with its keys;
 * anything else delivered to the domain's own users under its name is the most convincing
 * forgery there is (the "CEO" asking for a transfer), and this server knows the domain is its
 * own without asking the DNS. A DNS failure that leaves the answer open is a `451 4.4.3`.
 *
 * The trusted forwarder (RFC 8617 §7.2, `arc.trustedSealers`): a message that fails DMARC here
 * because a mailing list or forwarder changed it is accepted as if it had not failed when its
 * ARC chain validates, the newest set was added by a trusted sealer, and that sealer recorded
 * dmarc=pass when it received the message. The Authentication-Results field still says
 * dmarc=fail: nothing is hidden from the reader, only the policy is not applied.
 */

export function dmarcCheck(options: AuthenticationOptions): Check {
  const checked = checkedClients(options.settings);
  const excepted = exceptedClients(options.settings);
  const trusted = new Set(options.settings.arc.trustedSealers.map((d) => d.toLowerCase()));
  return {
    name: "dmarc",
    after: ["spf", "dkim", "arc"],
    open(client) {
      if (!checked(client)) return {};
      const ip = unmapIpv4(client.address);
      return {
        message(session, tx) {
          if (session.authUser !== null) return undefined;
          return {
            async endOfData(_header, earlier): Promise<CheckResult | undefined> {
              const dkim = dkimFindings(earlier.get("dkim"))?.verification;
              if (dkim === undefined) return undefined;
              const spf = spfOutcome(earlier.get("spf"));
              const arc = arcOutcome(earlier.get("arc"));
              const outcome = await checkDmarc({ authors: dkim.authors, fromFields: dkim.fromFields, spf, dkim: dkim.signatures, ...(arc ? { arc } : {}) }, options.resolver);
              const spared = excepted(ip)
                ? `client ${ip} is in authentication.exceptions`
                : trustedChain(arc, trusted);
              const decision = await decide({ outcome, dkim, spf, tx, spared }, options);
              if (decision.notEnforced) options.log.info({ queueId: tx.queueId, domain: outcome.authorDomain, policy: outcome.policy, why: spared }, "DMARC failure not enforced");
              return { authResults: [outcome.authResults], findings: outcome, ...decision.result };
            },
          };
        },
      };
    },
  };
}

/** Why a trusted forwarder's chain vouches for the message, or undefined. */
function trustedChain(arc: ArcOutcome | undefined, trusted: ReadonlySet<string>): string | undefined {
  const newest = arc?.result === "pass" ? arc.newest : undefined;
  if (newest === undefined || newest.dmarc !== "pass") return undefined;
  const sealer = [...trusted].find((d) => newest.sealer === d || newest.sealer.endsWith(`.${d}`));
  return sealer === undefined ? undefined : `ARC chain sealed by ${newest.sealer} (arc.trustedSealers), which recorded dmarc=pass`;
}

interface Facts {
  readonly outcome: DmarcOutcome;
  readonly dkim: DkimVerification;
  readonly spf: SpfOutcome | undefined;
  readonly tx: TransactionFacts;
  /** Why failures are not enforced for this message, if they are not. */
  readonly spared: string | undefined;
}

async function decide(f: Facts, options: AuthenticationOptions): Promise<{ result?: CheckResult; notEnforced?: true }> {
  const { settings } = options;
  const { outcome, spared } = f;
  if (settings.dmarc.localDomains === "reject") {
    const local = await localAuthor(f, options);
    if (local !== undefined && !authenticatedFor(local, f)) {
      if (spared !== undefined) return { notEnforced: true };
      if (temporary(f)) {
        return { result: tempfail(451, "4.4.3", `Temporary authentication failure: the DNS did not answer for ${local}, try again later`, `local domain ${local}: SPF, DKIM or DMARC lookups failed`) };
      }
      return {
        result: reject(550, "5.7.1", `Message rejected: ${local} is a domain of this server; mail from it must be authenticated (SMTP AUTH) or pass SPF or DKIM for it`, `spoofed local domain ${local} (dmarc=${outcome.result})`),
      };
    }
  }
  if (outcome.result !== "fail" || outcome.authorDomain === undefined) return {};
  if (outcome.policy === "none" || !enforces(f.tx, settings)) return {};
  if (spared !== undefined) return { notEnforced: true };
  const domain = outcome.authorDomain;
  if (outcome.policy === "reject") {
    return { result: reject(550, "5.7.1", `Message rejected: the DMARC policy of ${domain} is reject, and this message passed neither SPF nor DKIM for ${domain}`, `dmarc=fail p=reject for ${domain}`) };
  }
  return quarantineAction(f.tx, settings) === "folder"
    ? { result: { folder: settings.dmarc.junkFolder } }
    : { result: { headers: [{ name: "X-Spam-Flag", value: "YES" }] } };
}

/** The author domain when it is a local domain or below one (every From domain is looked at when there are several). */
async function localAuthor(f: Facts, options: AuthenticationOptions): Promise<string | undefined> {
  const domains = new Set(f.dkim.authors.map((a) => normalizeDomain(a.slice(a.lastIndexOf("@") + 1))));
  for (const d of domains) {
    if (d !== undefined && (await isLocalOrBelow(d, options.directory))) return d;
  }
  return undefined;
}

/** DMARC passed, or SPF or a DKIM signature passed for a domain aligned with `author` (the check when no record exists). */
function authenticatedFor(author: string, f: Facts): boolean {
  if (f.outcome.result === "pass" && f.outcome.authorDomain === author) return true;
  if (f.spf?.result === "pass" && alignsWithLocal(f.spf.domain, author)) return true;
  return f.dkim.signatures.some((s) => s.result === "pass" && alignsWithLocal(s.domain, author));
}

/** A lookup failed that could have made the message pass. */
function temporary(f: Facts): boolean {
  return f.outcome.result === "temperror" || f.spf?.result === "temperror" || f.dkim.signatures.some((s) => s.result === "temperror");
}

/** Enforced only when every recipient's domain enforces DMARC (a refusal refuses the message for all of them). */
function enforces(tx: TransactionFacts, settings: AuthenticationSettings): boolean {
  return settingsOf(tx, settings).every((s) => s.enforce ?? settings.dmarc.enforce);
}

/** The junk folder only when every recipient's domain quarantines into it, else the header. */
function quarantineAction(tx: TransactionFacts, settings: AuthenticationSettings): QuarantineAction {
  return settingsOf(tx, settings).every((s) => (s.quarantine ?? settings.dmarc.quarantine) === "folder") ? "folder" : "header";
}

/** The DMARC settings of each recipient's domain (empty ones where the global settings apply). */
function settingsOf(tx: TransactionFacts, settings: AuthenticationSettings): { enforce?: boolean; quarantine?: QuarantineAction }[] {
  const domains = new Set(tx.recipients.map((r) => r.mailbox.domain.toLowerCase()));
  return domains.size === 0 ? [{}] : [...domains].map((d) => settings.domains[d]?.dmarc ?? {});
}
