/**
 * The DNS records a domain publishes so that its mail reaches Petrel and Petrel's mail from it
 * is accepted elsewhere: one function per kind of record, each with the reason a person reads
 * next to it. `petrel dns` prints them (zone-file.ts) and checks them (check.ts); the README's
 * "DNS records to publish" shows the same output.
 */

import { policyHost, policyRecord, type MtaStsPolicy } from "../mta-sts/policy.ts";

export type RecordKind = "MX" | "SPF" | "DKIM" | "DMARC" | "MTA-STS" | "TLS-RPT";

export interface PublishedRecord {
  readonly kind: RecordKind;
  /** Owner name, without the final dot. */
  readonly name: string;
  readonly type: "MX" | "TXT" | "CNAME";
  /** MX: "10 mail.example.com."; CNAME: "mail.example.com."; TXT: the value as one string (zone-file.ts splits it). */
  readonly value: string;
  /** Why it is there, in a sentence or two. */
  readonly why: string;
}

/** The MX preference printed: the only MX, so any value works; 10 leaves room either side. */
export const MX_PREFERENCE = 10;

/** Mail for `domain` goes to this server. */
export function mxRecord(domain: string, hostname: string): PublishedRecord {
  return {
    kind: "MX",
    name: domain,
    type: "MX",
    value: `${MX_PREFERENCE} ${hostname}.`,
    why: `mail for ${domain} is delivered to ${hostname}, which needs an A (and AAAA) record with this server's address`,
  };
}

/**
 * SPF (RFC 7208): the hosts of the domain's MX — this server — may send its mail. "~all"
 * (softfail) rather than "-all": a receiver that refuses SPF failures at MAIL FROM would refuse
 * mail that a forwarder passes on before DMARC could find its DKIM signature valid; DMARC
 * still fails mail that neither SPF nor DKIM supports.
 */
export function spfRecord(domain: string): PublishedRecord {
  return {
    kind: "SPF",
    name: domain,
    type: "TXT",
    value: "v=spf1 mx ~all",
    why: "the hosts in the MX record (this server) send the domain's mail; add any other sender (a newsletter service: include:…)",
  };
}

/** A DKIM public key (RFC 6376 §3.6.2.1): `<selector>._domainkey.<domain>`. */
export function dkimRecord(domain: string, selector: string, record: string, note: string): PublishedRecord {
  return {
    kind: "DKIM",
    name: `${selector}._domainkey.${domain}`,
    type: "TXT",
    value: record,
    why: `key ${selector}${note ? `, ${note}` : ""}`,
  };
}

/**
 * DMARC (RFC 9989): p=none only asks for reports — nothing is refused while they show which
 * sources send as the domain and whether they pass; rua names where aggregate reports go (an
 * address of the domain itself needs no authorization record, RFC 7489 §7.1). Once the reports
 * show only aligned mail, p=quarantine then p=reject make forgeries fail.
 */
export function dmarcRecord(domain: string): PublishedRecord {
  return {
    kind: "DMARC",
    name: `_dmarc.${domain}`,
    type: "TXT",
    value: `v=DMARC1; p=none; rua=mailto:dmarc-reports@${domain}`,
    why: `ask only for reports at first (p=none), sent to dmarc-reports@${domain} (make it a mailbox or alias); move to p=quarantine, then p=reject, once they show only your own mail`,
  };
}

/** The MTA-STS policy Petrel hosts (src/mta-sts/), as `petrel dns` needs it. */
export interface HostedPolicy {
  readonly policy: MtaStsPolicy;
  /** Its text, from which the record's id is made. */
  readonly text: string;
  /** The port of the HTTPS listener that serves it. */
  readonly port: number;
}

/**
 * MTA-STS (RFC 8461 §3.1, §3.2): the `_mta-sts` TXT record whose id changes with the policy, and
 * the `mta-sts` host senders fetch the policy from — Petrel's HTTPS listener, on the ACME
 * certificate when `tls.acme` is set.
 */
export function mtaStsRecords(domain: string, hostname: string, hosted: HostedPolicy): PublishedRecord[] {
  return [
    {
      kind: "MTA-STS",
      name: `_mta-sts.${domain}`,
      type: "TXT",
      value: policyRecord(hosted.text),
      why: `a policy (mode ${hosted.policy.mode}) is at https://${policyHost(domain)}/.well-known/mta-sts.txt; the id changes whenever the policy does, so publish this again after changing mtaSts`,
    },
    {
      kind: "MTA-STS",
      name: policyHost(domain),
      type: "CNAME",
      value: `${hostname}.`,
      why: `senders fetch the policy over HTTPS from this server (port ${hosted.port}), whose certificate must carry this name (tls.acme adds it)`,
    },
  ];
}

/**
 * TLS-RPT (RFC 8460 §3): where sending servers mail their daily reports of TLS successes and
 * failures toward the domain; postmaster@ exists for every domain (RFC 5321 §4.5.1).
 */
export function tlsRptRecord(domain: string): PublishedRecord {
  return {
    kind: "TLS-RPT",
    name: `_smtp._tls.${domain}`,
    type: "TXT",
    value: `v=TLSRPTv1; rua=mailto:postmaster@${domain}`,
    why: `other servers send daily reports of TLS failures delivering to ${domain} to postmaster@${domain}`,
  };
}

export interface DkimKeyFacts {
  readonly selector: string;
  readonly algorithm: string;
  readonly record: string;
  /** Named in dkim.domains: it signs. Otherwise published for rotation only. */
  readonly signing: boolean;
}

/** Every record for `domain`, in the order a person sets them up; MTA-STS and TLS-RPT when Petrel hosts a policy. */
export function recordsFor(domain: string, hostname: string, keys: readonly DkimKeyFacts[], hosted?: HostedPolicy): PublishedRecord[] {
  return [
    mxRecord(domain, hostname),
    spfRecord(domain),
    ...keys.map((k) =>
      dkimRecord(
        domain,
        k.selector,
        k.record,
        k.signing ? `${k.algorithm}, signs (in dkim.domains)` : `${k.algorithm}, not in dkim.domains: publish it before it signs, keep it until mail it signed is delivered`,
      ),
    ),
    dmarcRecord(domain),
    ...(hosted ? [...mtaStsRecords(domain, hostname, hosted), tlsRptRecord(domain)] : []),
  ];
}
