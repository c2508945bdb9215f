/**
 * How the remote agent must protect a session to one host, decided per host before it
 * connects — the receiver's demands first, then the sender's, then the configuration:
 *
 * 1. DANE (RFC 7672 §2.2): when the MX RRset and the host's addresses were DNSSEC-validated,
 *    the host's TLSA records are looked up. Validated usable records make STARTTLS mandatory
 *    and authenticate the server by them (client/dane.ts), never falling back to plaintext or
 *    unverified TLS. Validated records of which none is usable still make TLS mandatory, only
 *    unauthenticated (RFC 7672 §2.2, Postfix's "encrypt"). A TLSA lookup that fails (a
 *    validating resolver answers SERVFAIL to bogus data) keeps the host unused (§2.2). DANE
 *    wins over MTA-STS (RFC 8461 §2).
 * 2. MTA-STS (RFC 8461 §4, §5): "enforce" delivers only to MX hosts the policy names, with
 *    mandatory STARTTLS and a certificate valid for the MX host name; "testing" delivers as
 *    configured and reports what enforce would have refused.
 * 3. REQUIRETLS (RFC 8689 §4.2.1): the MX host name must be authenticated (a DNSSEC-validated
 *    MX RRset, an enforced MTA-STS policy naming it, or a relay named in the configuration) and
 *    the server authenticated by DANE or by a certificate valid for that name; the server's
 *    REQUIRETLS is checked once the session is open (remote-agent.ts). Hosts that cannot
 *    qualify are deferred with 4.7.30, bouncing 5.7.30 if it never changes (RFC 8689 §5).
 * 4. Otherwise outbound.tls (opportunistic by default, RFC 7435).
 *
 * A "TLS-Required: No" header field (RFC 8689 §4.1; TLS-RPT reports carry it) sets 1 and 2
 * aside; REQUIRETLS sets the header field aside.
 */
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import type { DaneAuthentication } from "../client/dane.ts";
import { usableForSmtp } from "../client/dane.ts";
import type { TlsMode } from "../client/smtp-connection.ts";
import { formatTlsa, type TlsaResolver } from "../dns/tlsa.ts";
import { mxMatches, type StsApplied } from "../mta-sts/sts-policies.ts";
import type { DeliveryOutcome } from "../queue/ports.ts";
import type { ReportedPolicy, ResultType, TlsSessionResult } from "../tls-rpt/session-result.ts";
import { deferred } from "./outcome-policy.ts";

export type OutboundTls = "opportunistic" | "required" | "implicit" | "none";

/** What is known about the destination before any host is tried. */
export interface Destination {
  /** The recipient domain: MTA-STS's policy domain (RFC 8460 §3). */
  readonly domain: string;
  /** The hosts came from an MX lookup (not a configured relay nor an address literal). */
  readonly viaMx: boolean;
  /** The MX RRset (or, with no MX, the domain's own addresses) was DNSSEC-validated. */
  readonly mxAuthentic: boolean;
  /** The MTA-STS policy, when one was looked up. */
  readonly sts?: StsApplied;
  /** RFC 8689 REQUIRETLS. */
  readonly requireTls: boolean;
  /** RFC 8689 §4.1 "TLS-Required: No" (and no REQUIRETLS). */
  readonly tlsRequiredNo: boolean;
}

export interface Host {
  readonly name: string;
  /** Its address records were DNSSEC-validated. */
  readonly authentic: boolean;
}

export interface HostPlan {
  readonly tls: TlsMode;
  /** PKIX: the certificate must chain to a trusted CA and carry the host name. */
  readonly verifyCertificate: boolean;
  readonly dane?: DaneAuthentication;
  /** The policy sessions to this host are reported under (TLS-RPT); absent: not reported. */
  readonly report?: ReportedPolicy;
  /** A failure every session to this host reports even when it succeeds (unusable TLSA records, an MTA-STS policy that could not be had). */
  readonly standingFailure?: { readonly resultType: ResultType; readonly reason: string };
  /** MTA-STS testing: what enforce would check, verified after the handshake and reported. */
  readonly testing?: { readonly mxMatches: boolean };
  /** The host name is authenticated (RFC 8689 §4.2.1): a verified session to it satisfies REQUIRETLS. */
  readonly nameAuthentic: boolean;
  /** The part of the connection-cache key that says how the session is protected. */
  readonly key: string;
}

export type HostDecision =
  | { readonly kind: "go"; readonly plan: HostPlan }
  | { readonly kind: "skip"; readonly outcome: DeliveryOutcome; readonly report?: TlsSessionResult };

/** RFC 8689 §5: a REQUIRETLS message no host can take bounces with 5.7.30 once the queue gives up. */
export function requireTlsDeferral(diagnostic: string, remoteMta?: string): DeliveryOutcome {
  return { status: "deferred", enhanced: "4.7.30", diagnostic, ...(remoteMta ? { remoteMta } : {}), bounceStatus: "5.7.30" };
}

export interface PlanOptions {
  readonly configured: OutboundTls;
  readonly port: number;
  /** DANE on (it also needs dns.dnssec, for anything to be authentic). */
  readonly dane: boolean;
  readonly resolver: TlsaResolver;
}

export async function planHost(dest: Destination, host: Host, o: PlanOptions): Promise<HostDecision> {
  const base = configuredPlan(o.configured, !dest.viaMx && isIP(host.name) === 0);
  if (!dest.viaMx || dest.tlsRequiredNo) return requireTls(dest, host, base);

  if (o.dane && dest.mxAuthentic && host.authentic && isIP(host.name) === 0) {
    const t = await o.resolver.resolveTlsa(host.name, o.port);
    if (t.kind === "temporary") {
      const reason = `TLSA lookup for ${t.name} failed (${t.reason}): ${host.name} is not used until its DANE records can be checked (RFC 7672 section 2.2)`;
      return {
        kind: "skip", outcome: deferred("4.7.5", reason),
        report: { policy: { type: "tlsa", domain: host.name, lines: [] }, failure: { resultType: "dnssec-invalid", receivingMxHostname: host.name } },
      };
    }
    if (t.kind === "records" && t.authentic) {
      const usable = t.records.filter(usableForSmtp);
      const report: ReportedPolicy = { type: "tlsa", domain: host.name, lines: t.records.map(formatTlsa) };
      if (usable.length > 0) {
        const digest = createHash("sha256").update(usable.map(formatTlsa).join("\n")).digest("hex").slice(0, 16);
        return requireTls(dest, host, {
          tls: "starttls", verifyCertificate: false, dane: { tlsa: usable, names: [host.name, dest.domain] },
          report, nameAuthentic: true, key: `dane:${digest}`,
        });
      }
      const sts = stsPlan(dest, host, base);
      if (sts?.kind === "go" && sts.plan.verifyCertificate) return requireTls(dest, host, sts.plan);
      return requireTls(dest, host, {
        tls: "starttls", verifyCertificate: false, report, nameAuthentic: true, key: "encrypt",
        standingFailure: { resultType: "tlsa-invalid", reason: "no usable TLSA record (RFC 7672 section 3.1.3)" },
      });
    }
  }
  const sts = stsPlan(dest, host, base);
  if (sts?.kind === "skip") return sts;
  return requireTls(dest, host, sts?.plan ?? noPolicyPlan(dest, base));
}

function configuredPlan(configured: OutboundTls, namedRelay: boolean): HostPlan {
  const tls: TlsMode = configured === "required" ? "starttls" : configured;
  // Required and implicit TLS verify the name (a relay's, from the configuration: authentic); opportunistic TLS is unverified (RFC 7435).
  const verify = configured === "required" || configured === "implicit";
  return { tls, verifyCertificate: verify, nameAuthentic: namedRelay, key: `${configured}` };
}

function noPolicyPlan(dest: Destination, base: HostPlan): HostPlan {
  const failure = dest.sts?.failure;
  return {
    ...base,
    nameAuthentic: dest.mxAuthentic,
    report: failure ? { type: "sts", domain: dest.domain, lines: [], mxHost: [] } : { type: "no-policy-found", domain: dest.domain },
    ...(failure ? { standingFailure: { resultType: failure.resultType, reason: failure.reason } } : {}),
  };
}

/** The plan an MTA-STS policy makes, or undefined when none applies. */
function stsPlan(dest: Destination, host: Host, base: HostPlan): HostDecision | undefined {
  const sts = dest.sts;
  if (sts?.kind !== "policy") return undefined;
  const { policy } = sts;
  const report: ReportedPolicy = { type: "sts", domain: dest.domain, lines: policy.lines, mxHost: policy.mx };
  const matches = mxMatches(policy, host.name);
  if (policy.mode === "enforce") {
    if (!matches) {
      return {
        kind: "skip",
        outcome: deferred("4.7.5", `${host.name} is not an MX host the MTA-STS policy of ${dest.domain} allows (mx: ${policy.mx.join(", ")}; mode enforce, RFC 8461 section 4.1)`),
        report: { policy: report, failure: { resultType: "validation-failure", receivingMxHostname: host.name, failureReasonCode: "mx-not-in-policy" } },
      };
    }
    return { kind: "go", plan: { tls: "starttls", verifyCertificate: true, report, nameAuthentic: true, key: "sts-enforce" } };
  }
  return { kind: "go", plan: { ...base, report, testing: { mxMatches: matches }, nameAuthentic: dest.mxAuthentic } };
}

/** RFC 8689 §4.2.1: with REQUIRETLS, an authenticated host name and a verified session, or no session at all. */
function requireTls(dest: Destination, host: Host, plan: HostPlan): HostDecision {
  if (!dest.requireTls || plan.dane !== undefined || (plan.verifyCertificate && plan.nameAuthentic)) return { kind: "go", plan };
  if (!plan.nameAuthentic || isIP(host.name) !== 0) {
    return {
      kind: "skip",
      outcome: requireTlsDeferral(`REQUIRETLS: the name of ${host.name} cannot be authenticated (no DNSSEC-validated MX records, no MTA-STS policy in enforce mode naming it), so the message may not go there (RFC 8689 section 4.2.1)`),
    };
  }
  return { kind: "go", plan: { ...plan, tls: plan.tls === "implicit" ? "implicit" : "starttls", verifyCertificate: true, key: `${plan.key}+requiretls` } };
}
