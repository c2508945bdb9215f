/**
 * `petrel dkim keygen DOMAIN [--selector S] [--algo rsa|ed25519]`: a new DKIM key in the data
 * directory, and what to do with it — the TXT record to publish, then the config line that
 * makes it sign.
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.ts";
import { normalizeDomain } from "../mail/address.ts";
import { dkimRecordValue, generateDkimKey, RSA_BITS, type KeyAlgorithm } from "../mailauth/dkim-keys.ts";
import { isSelector } from "../mailauth/selector.ts";
import { dkimRecord } from "../dns-records/records.ts";
import { zoneEntry } from "../dns-records/zone-file.ts";
import type { CommandIo } from "./accounts-commands.ts";

export const DKIM_USAGE = `Usage: petrel dkim keygen DOMAIN [--selector S] [--algo rsa|ed25519] [--config FILE]
  Creates <dataDir>/dkim/DOMAIN/S.key (and S.pub) and prints the TXT record to publish.
  --algo       rsa (2048 bits, the default: every receiver verifies it) or ed25519 (RFC 8463;
               sign with both: generate one of each)
  --selector   the key's name in DNS (default: YYYYMM-ALGO, e.g. 202612-rsa); a new key needs
               a new selector, existing keys are never overwritten
`;

export async function dkimCommand(argv: string[], io: Pick<CommandIo, "stdout" | "stderr">, now: () => Date = () => new Date()): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: "string", short: "c" }, selector: { type: "string", short: "s" }, algo: { type: "string", short: "a" } },
    });
  } catch (err) {
    io.stderr.write(`petrel dkim: ${(err as Error).message}\n\n${DKIM_USAGE}`);
    return 2;
  }
  const [sub, domainArg, ...extra] = parsed.positionals;
  if (sub !== "keygen") {
    io.stderr.write(sub ? `petrel dkim: unknown command '${sub}'\n\n${DKIM_USAGE}` : DKIM_USAGE);
    return sub ? 2 : 0;
  }
  const domain = domainArg === undefined ? undefined : normalizeDomain(domainArg);
  if (domain === undefined || extra.length > 0) {
    io.stderr.write(domainArg === undefined || extra.length > 0 ? DKIM_USAGE : `petrel dkim keygen: "${domainArg}" is not a domain name\n`);
    return 2;
  }
  const algo = parsed.values.algo ?? "rsa";
  if (algo !== "rsa" && algo !== "ed25519") {
    io.stderr.write(`petrel dkim keygen: --algo is rsa or ed25519, not "${algo}"\n`);
    return 2;
  }
  const month = now().toISOString().slice(0, 7).replace("-", "");
  const selector = parsed.values.selector ?? `${month}-${algo}`;
  if (!isSelector(selector)) {
    io.stderr.write(`petrel dkim keygen: "${selector}" is not a selector: letters, digits and hyphens (dots between labels)\n`);
    return 2;
  }
  const config = await loadConfig(parsed.values.config);
  let key;
  try {
    key = await generateDkimKey(config.dataDir, domain, selector, algo as KeyAlgorithm);
  } catch (err) {
    io.stderr.write(`petrel dkim keygen: ${(err as Error).message}\n`);
    return 1;
  }
  const record = dkimRecord(domain, selector, dkimRecordValue(key.publicKey), "");
  const signing = [...(config.dkim.domains[domain]?.selectors ?? []), selector];
  io.stdout.write(
    `Created the ${algo === "rsa" ? `RSA (${RSA_BITS}-bit)` : "Ed25519"} DKIM key "${selector}" for ${domain}:\n` +
      `  ${key.key}  (private: keep it, mode 0600)\n` +
      `  ${key.pub}\n\n` +
      `1. Publish this TXT record in the DNS of ${domain}:\n\n` +
      `${zoneEntry(record)}\n\n` +
      `   In a DNS provider's web form: name ${record.name}, type TXT, and the value as one string:\n` +
      `   ${record.value}\n\n` +
      `2. Check that the DNS answers it:  petrel dns ${domain} --check\n\n` +
      `3. Then let it sign, in petrel.yaml (when it replaces a key, drop the old selector here but\n` +
      `   keep its record published until mail signed with it has been delivered, a week or so):\n\n` +
      `dkim:\n  domains:\n    ${domain}:\n      selectors: [${signing.join(", ")}]\n`,
  );
  return 0;
}
