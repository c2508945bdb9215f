/**
 * `petrel dkim keygen DOMAIN [--selector S] [--algo rsa|ed25519]`: a new DKIM key in the data
 * directory — or, with storage.kind postgres, in the cluster's database, for every node — and
 * what to do with it: the TXT record to publish, then the config line that makes it sign.
 */
import type { KeyObject } from "node:crypto";
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.ts";
import type { PostgresStorageConfig } from "../config/schema.ts";
import { generateStoredDkimKey } from "../mailauth/cluster-dkim-keys.ts";
import { PostgresDkimKeyStore } from "../storage/postgres/dkim-key-store.ts";
import { openDatabase } from "../storage/postgres/open-database.ts";
import { nodeName } from "../storage/postgres/node-name.ts";
import { describePostgres } from "../storage/postgres/postgres-pool.ts";
import { normalizeDomain } from "../mail/address.ts";
import { dkimRecordValue, generateDkimKey, RSA_BITS, type KeyAlgorithm } from "../mailauth/dkim-keys.ts";
import { isSelector } from "../mailauth/selector.ts";
import { dkimRecord } from "../dns-records/records.ts";
import { zoneEntry } from "../dns-records/zone-file.ts";
import type { CommandIo } from "./accounts-commands.ts";

export const DKIM_USAGE = `Usage: petrel dkim keygen DOMAIN [--selector S] [--algo rsa|ed25519] [--config FILE]
  Creates <dataDir>/dkim/DOMAIN/S.key (and S.pub) — with storage.kind postgres, the key in the
  cluster's database instead, for every node — and prints the TXT record to publish.
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
  let made: { publicKey: KeyObject; where: string };
  try {
    made = config.storage.kind === "postgres"
      ? await inDatabase(config.storage, domain, selector, algo)
      : await inDataDir(config.dataDir, domain, selector, algo);
  } catch (err) {
    io.stderr.write(`petrel dkim keygen: ${(err as Error).message}\n`);
    return 1;
  }
  const record = dkimRecord(domain, selector, dkimRecordValue(made.publicKey), "");
  const signing = [...(config.dkim.domains[domain]?.selectors ?? []), selector];
  io.stdout.write(
    `Created the ${algo === "rsa" ? `RSA (${RSA_BITS}-bit)` : "Ed25519"} DKIM key "${selector}" for ${domain}:\n` +
      `${made.where}\n\n` +
      `1. Publish this TXT record in the DNS of ${domain}:\n\n` +
      `${zoneEntry(record)}\n\n` +
      `   In a DNS provider's web form: name ${record.name}, type TXT, and the value as one string:\n` +
      `   ${record.value}\n\n` +
      `2. Check that the DNS answers it:  petrel dns ${domain} --check\n\n` +
      `3. Then let it sign, in petrel.yaml${config.storage.kind === "postgres" ? " of every node" : ""} (when it replaces a key, drop the old selector here but\n` +
      `   keep its record published until mail signed with it has been delivered, a week or so):\n\n` +
      `dkim:\n  domains:\n    ${domain}:\n      selectors: [${signing.join(", ")}]\n`,
  );
  return 0;
}

async function inDataDir(dataDir: string, domain: string, selector: string, algo: KeyAlgorithm): Promise<{ publicKey: KeyObject; where: string }> {
  const key = await generateDkimKey(dataDir, domain, selector, algo);
  return { publicKey: key.publicKey, where: `  ${key.key}  (private: keep it, mode 0600)\n  ${key.pub}` };
}

/** storage.kind postgres: the key is the cluster's, in the database, for every node to sign with. */
async function inDatabase(storage: PostgresStorageConfig, domain: string, selector: string, algo: KeyAlgorithm): Promise<{ publicKey: KeyObject; where: string }> {
  const database = await openDatabase(storage, { info: () => {}, error: () => {} });
  try {
    const key = await generateStoredDkimKey(new PostgresDkimKeyStore({ pool: database, node: nodeName(storage) }), domain, selector, algo);
    return { publicKey: key.publicKey, where: `  in the database (${describePostgres(storage.url)}), table dkim_key: every node signs with it` };
  } finally {
    await database.end();
  }
}
