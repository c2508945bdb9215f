/**
 * `petrel dns DOMAIN [--check]`: every DNS record DOMAIN needs for mail through this server,
 * ready to paste into a zone file; with --check, each compared with what the configured
 * resolvers answer.
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { normalizeDomain } from "../mail/address.ts";
import { createResolver } from "../dns/resolver.ts";
import { dkimKeyPaths, listDkimKeys } from "../mailauth/dkim-keys.ts";
import { checkRecords, formatCheck } from "../dns-records/check.ts";
import { recordsFor, type PublishedRecord } from "../dns-records/records.ts";
import { zoneText } from "../dns-records/zone-file.ts";
import { configuredPolicy, formatPolicy } from "../mta-sts/policy.ts";
import type { CommandIo } from "./accounts-commands.ts";

export const DNS_USAGE = `Usage: petrel dns DOMAIN [--check] [--config FILE]
  Prints the DNS records DOMAIN needs (MX, SPF, a DKIM key record per key in
  <dataDir>/dkim/DOMAIN/, DMARC; MTA-STS and TLS-RPT when mtaSts is set) in zone-file form. --check compares them with what the
  configured resolvers (dns.servers) answer; the exit status is 1 when one needs attention.
`;

type Io = Pick<CommandIo, "stdout" | "stderr">;

export async function dnsCommand(argv: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { config: { type: "string", short: "c" }, check: { type: "boolean" } } });
  } catch (err) {
    io.stderr.write(`petrel dns: ${(err as Error).message}\n\n${DNS_USAGE}`);
    return 2;
  }
  const [domainArg, ...extra] = parsed.positionals;
  if (domainArg === undefined || extra.length > 0) {
    io.stderr.write(DNS_USAGE);
    return 2;
  }
  const domain = normalizeDomain(domainArg);
  if (domain === undefined) {
    io.stderr.write(`petrel dns: "${domainArg}" is not a domain name\n`);
    return 2;
  }
  const config = await loadConfig(parsed.values.config);
  const { records, problems } = await domainRecords(config, domain);
  for (const p of problems) io.stderr.write(`petrel dns: ${p}\n`);
  if (!parsed.values.check) {
    io.stdout.write(`; DNS records for ${domain}, to publish at its DNS provider (zone-file form).\n\n${zoneText(records)}`);
    return problems.length > 0 ? 1 : 0;
  }
  const resolver = createResolver({ servers: config.dns.servers });
  try {
    const checks = await checkRecords(records, { resolver, hostname: config.hostname });
    io.stdout.write(`DNS records of ${domain}, as the resolvers answer:\n`);
    for (const c of checks) io.stdout.write(`${formatCheck(c)}\n`);
    const attention = checks.filter((c) => c.status !== "ok").length;
    io.stdout.write(
      attention === 0
        ? `All ${checks.length} checks passed.\n`
        : `${attention} of ${checks.length} need attention; "petrel dns ${domain}" prints the records to publish.\n`,
    );
    return attention > 0 || problems.length > 0 ? 1 : 0;
  } finally {
    resolver.close();
  }
}

/** The records for `domain` from the config and the keys in the data directory, and what is amiss there. */
export async function domainRecords(config: Config, domain: string): Promise<{ records: PublishedRecord[]; problems: string[] }> {
  const problems: string[] = [];
  if (config.hostname === "localhost" || !config.hostname.includes(".")) {
    problems.push(`hostname is "${config.hostname}": set hostname in the config to this server's public name, which the MX record names`);
  }
  const keys = await listDkimKeys(config.dataDir, domain);
  const signing = config.dkim.domains[domain]?.selectors ?? [];
  for (const selector of signing) {
    if (!keys.some((k) => k.selector === selector)) {
      problems.push(`dkim.domains names selector "${selector}" for ${domain}, but ${dkimKeyPaths(config.dataDir, domain, selector).pub} does not exist: run "petrel dkim keygen ${domain} --selector ${selector}"`);
    }
  }
  if (keys.length === 0) problems.push(`${domain} has no DKIM key: create one with "petrel dkim keygen ${domain}"`);
  const facts = keys.map((k) => ({ ...k, signing: signing.includes(k.selector) }));
  const policy = configuredPolicy(config);
  const hosted = policy ? { policy, text: formatPolicy(policy), port: config.mtaSts!.listen.port } : undefined;
  return { records: recordsFor(domain, config.hostname, facts, hosted), problems };
}
