/**
 * `petrel dns DOMAIN [--check]`: every DNS record DOMAIN needs for mail through this server,
 * ready to paste into a zone file; with --check, each compared with what the configured
 * resolvers answer.
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { PostgresDkimKeyStore } from "../storage/postgres/dkim-key-store.ts";
import { openDatabase } from "../storage/postgres/open-database.ts";
import { nodeName } from "../storage/postgres/node-name.ts";
import { normalizeDomain } from "../mail/address.ts";
import { createResolver } from "../dns/resolver.ts";
import { checkRecords, formatCheck } from "../dns-records/check.ts";
import { domainRecords } from "../dns-records/domain-records.ts";
import { zoneText } from "../dns-records/zone-file.ts";
import type { CommandIo } from "./accounts-commands.ts";

export const DNS_USAGE = `Usage: petrel dns DOMAIN [--check] [--config FILE]
  Prints the DNS records DOMAIN needs (MX, SPF, a DKIM key record per key in
  <dataDir>/dkim/DOMAIN/ or, with storage.kind postgres, in the database, DMARC; MTA-STS and TLS-RPT when mtaSts is set) in zone-file form. --check compares them with what the
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
  const { records, problems } = await recordsOf(config, domain);
  for (const p of problems) io.stderr.write(`petrel dns: ${p.text}\n`);
  if (!parsed.values.check) {
    io.stdout.write(`; DNS records for ${domain}, to publish at its DNS provider (zone-file form).\n\n${zoneText(records)}`);
    return problems.length > 0 ? 1 : 0;
  }
  const resolver = createResolver({ servers: config.dns.servers });
  try {
    const checks = await checkRecords(records, { resolver, hostname: config.hostname, heloName: config.outbound.heloName ?? config.hostname });
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

/** The records, with the DKIM keys of the cluster's database when storage.kind is postgres. */
async function recordsOf(config: Config, domain: string): ReturnType<typeof domainRecords> {
  if (config.storage.kind !== "postgres") return domainRecords(config, domain);
  const database = await openDatabase({ ...config.storage, migrate: false }, { info: () => {}, error: () => {} });
  try {
    return await domainRecords(config, domain, new PostgresDkimKeyStore({ pool: database, node: nodeName(config.storage) }));
  } finally {
    await database.end();
  }
}
