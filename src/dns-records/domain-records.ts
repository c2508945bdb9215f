/**
 * The records one local domain needs, from the configuration and the DKIM keys in the data
 * directory (in the database for a cluster) — what `petrel dns` prints and checks and `petrel doctor` checks — with what is
 * amiss on this side (no public hostname, a signing selector without its key, no key at all).
 */
import type { Config } from "../config/schema.ts";
import { dkimKeyPaths, listDkimKeys } from "../mailauth/dkim-keys.ts";
import { listStoredDkimKeys } from "../mailauth/cluster-dkim-keys.ts";
import type { DkimKeyStore } from "../mailauth/dkim-key-store.ts";
import { configuredPolicy, formatPolicy } from "../mta-sts/policy.ts";
import { recordsFor, type PublishedRecord } from "./records.ts";

/** What is amiss on this side: `no-key` is only a missed chance (unsigned mail), the others are mistakes. */
export interface DomainProblem {
  readonly kind: "hostname" | "selector-without-key" | "no-key";
  readonly text: string;
}

/** The records for `domain` from the config and the keys in the data directory (in `store` when given), and what is amiss there. */
export async function domainRecords(config: Config, domain: string, store?: DkimKeyStore): Promise<{ records: PublishedRecord[]; problems: DomainProblem[] }> {
  const problems: DomainProblem[] = [];
  const problem = (kind: DomainProblem["kind"], text: string) => problems.push({ kind, text });
  if (config.hostname === "localhost" || !config.hostname.includes(".")) {
    problem("hostname", `hostname is "${config.hostname}": set hostname in the config to this server's public name, which the MX record names`);
  }
  // storage.kind postgres: the cluster's keys (`store`), which every node signs with.
  const keys = store ? await listStoredDkimKeys(store, domain) : await listDkimKeys(config.dataDir, domain);
  const signing = config.dkim.domains[domain]?.selectors ?? [];
  for (const selector of signing) {
    if (!keys.some((k) => k.selector === selector)) {
      const where = store ? "the database has no such key" : `${dkimKeyPaths(config.dataDir, domain, selector).pub} does not exist`;
      problem("selector-without-key", `dkim.domains names selector "${selector}" for ${domain}, but ${where}: run "petrel dkim keygen ${domain} --selector ${selector}"`);
    }
  }
  if (keys.length === 0) problem("no-key", `${domain} has no DKIM key: create one with "petrel dkim keygen ${domain}"`);
  const facts = keys.map((k) => ({ ...k, signing: signing.includes(k.selector) }));
  const policy = configuredPolicy(config);
  const hosted = policy ? { policy, text: formatPolicy(policy), port: config.mtaSts!.listen.port } : undefined;
  return { records: recordsFor(domain, config.hostname, facts, hosted), problems };
}
