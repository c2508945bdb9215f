/**
 * `petrel doctor`, the public DNS of the local domains as the configured
 * resolvers answer — the checks of `petrel dns --check` (dns-records/):
 * the MX names this server, SPF lets it send, the DKIM record of each key
 * in <dataDir>/dkim/<domain>/ (a cluster's: in the database) holds that key, a DMARC record exists — and
 * forward-confirmed reverse DNS of the sending addresses under the HELO
 * name, each turned into a finding with what to do.
 */
import type { Config } from "../config/schema.ts";
import { checkRecords, type RecordCheck } from "../dns-records/check.ts";
import { domainRecords } from "../dns-records/domain-records.ts";
import type { DkimKeyStore } from "../mailauth/dkim-key-store.ts";
import type { PublishedRecord } from "../dns-records/records.ts";
import type { RecordResolver } from "../dns/records.ts";
import type { Resolver } from "../dns/resolver.ts";
import { fail, info, ok, warn, type Finding } from "./finding.ts";

export type DoctorResolver = Resolver & RecordResolver;

/** localhost and names without a dot have no public DNS. */
export function isPublicDomain(domain: string): boolean {
  return domain.includes(".") && !/(^|\.)localhost$/i.test(domain);
}

export async function publicDns(config: Config, domains: readonly string[], resolver: DoctorResolver, dkimKeys?: DkimKeyStore): Promise<Finding[]> {
  if (!isPublicDomain(config.hostname)) {
    return [warn("dns", `hostname is "${config.hostname}", not a public name: other servers can neither find this one nor trust its HELO, so no public DNS was checked`,
      "set hostname: to this server's public DNS name (the one its MX records give)")];
  }
  const findings: Finding[] = [];
  const records: { record: PublishedRecord; domain: string }[] = [];
  for (const domain of domains) {
    if (!isPublicDomain(domain)) {
      findings.push(info("dns", `${domain} is not a public domain name: no DNS to check`));
      continue;
    }
    const found = await domainRecords(config, domain, dkimKeys);
    for (const p of found.problems) {
      if (p.kind === "no-key") findings.push(info("dkim", `${p.text} (mail from ${domain} goes out unsigned, and DMARC then rests on SPF alone)`));
      else if (p.kind === "selector-without-key") findings.push(fail("dkim", p.text, `petrel dkim keygen ${domain} --selector SELECTOR, then publish its record`));
    }
    records.push(...found.records.map((record) => ({ record, domain })));
  }
  const heloName = config.outbound.heloName ?? config.hostname;
  const sendingAddresses = [config.outbound.sourceAddress, config.outbound.sourceAddress6].filter((a): a is string => a !== undefined);
  const checks = await checkRecords(records.map((r) => r.record), { resolver, hostname: config.hostname, heloName, sendingAddresses });
  // checkRecords answers each record in order, then the reverse DNS of each sending address.
  checks.forEach((c, i) => findings.push(finding(c, records[i]?.domain, heloName)));
  if (!checks.some((c) => c.kind === "PTR")) {
    findings.push(warn("ptr", `cannot check reverse DNS: ${heloName} (the HELO name) has no address and outbound.sourceAddress is not set`, `publish an A (and AAAA) record for ${heloName}`));
  }
  return findings;
}

function finding(c: RecordCheck, domain: string | undefined, heloName: string): Finding {
  const check = c.kind.toLowerCase();
  if (c.status === "ok") return ok(check, c.text);
  const fix = c.kind === "PTR"
    ? `ask whoever owns the address (the hosting or cloud provider, in its control panel) to set its reverse DNS (PTR) to ${heloName}`
    : `"petrel dns ${domain}" prints the record to publish at the domain's DNS provider; "petrel dns ${domain} --check" checks again`;
  if (c.status === "unknown") return warn(check, c.text, c.kind === "PTR" ? "try again" : fix);
  // Without DMARC mail still flows; the large providers only start to frown.
  if (c.status === "missing" && c.kind === "DMARC") return warn(check, c.text, fix);
  return fail(check, c.text, fix);
}
