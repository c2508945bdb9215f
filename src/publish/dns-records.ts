/**
 * The DNS records an operator publishes for one of Petrel's domains, as
 * zone-file lines with a comment saying what each is for. Printed by
 * `petrel dns DOMAIN`; meant to grow with each published mechanism (SPF,
 * DKIM and DMARC records belong here too).
 *
 * - MX (RFC 5321 §5): mail for the domain goes to Petrel's hostname.
 * - MTA-STS (RFC 8461 §3.1, §3.2), when Petrel hosts the policy: the
 *   `_mta-sts` TXT record whose id changes with the policy, and the
 *   mta-sts.<domain> host that must reach Petrel's HTTPS listener.
 * - TLS-RPT (RFC 8460 §3): where senders mail reports of TLS failures.
 */
import type { Config } from "../config/schema.ts";
import { configuredPolicy, formatPolicy, policyHost, policyRecord } from "../mta-sts/policy.ts";

export interface PublishedRecord {
  /** Owner name, fully qualified, without the trailing dot. */
  readonly name: string;
  readonly type: "MX" | "TXT" | "CNAME";
  /** RDATA in zone-file syntax (TXT values unquoted). */
  readonly value: string;
  /** What the record is for, one line. */
  readonly purpose: string;
}

const TTL = 3600;

export function recordsToPublish(config: Config, domain: string): PublishedRecord[] {
  const host = config.hostname;
  const records: PublishedRecord[] = [
    { name: domain, type: "MX", value: `10 ${host}.`, purpose: `mail for ${domain} is delivered to this server (${host} needs A/AAAA records)` },
  ];
  const policy = configuredPolicy(config);
  if (policy) {
    const text = formatPolicy(policy);
    records.push(
      { name: `_mta-sts.${domain}`, type: "TXT", value: policyRecord(text), purpose: `MTA-STS: a policy (mode ${policy.mode}) is at https://${policyHost(domain)}/.well-known/mta-sts.txt; the id changes with it` },
      { name: policyHost(domain), type: "CNAME", value: `${host}.`, purpose: `MTA-STS: senders fetch the policy from Petrel's HTTPS listener (port ${config.mtaSts!.listen.port})` },
    );
  }
  records.push({
    name: `_smtp._tls.${domain}`,
    type: "TXT",
    value: `v=TLSRPTv1; rua=mailto:postmaster@${domain}`,
    purpose: "TLS-RPT: where other servers send daily reports of TLS failures delivering to this domain",
  });
  return records;
}

/** Zone-file lines, each record after a comment saying what it is for. */
export function formatRecords(records: readonly PublishedRecord[]): string {
  const width = Math.max(...records.map((r) => r.name.length + 1));
  return records
    .map((r) => {
      const value = r.type === "TXT" ? `"${r.value}"` : r.value;
      return `; ${r.purpose}\n${`${r.name}.`.padEnd(width)} ${TTL} IN ${r.type.padEnd(5)} ${value}\n`;
    })
    .join("");
}
