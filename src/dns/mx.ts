/**
 * From a domain to the hosts that receive its mail (RFC 5321 §5.1, RFC 7505):
 * MX records sorted by preference with equal preferences shuffled, the null MX, and the
 * implicit MX (the domain's own addresses) when there are no MX records at all.
 */
import type { MxAnswer } from "dns-packet";
import type { LookupResult } from "./lookup.ts";
import { normalizeName, type NormalizedName } from "./names.ts";
import type { HostAddresses } from "./addresses.ts";

export interface MxHost {
  readonly exchange: string;
  readonly preference: number;
  /** IPv6 first then IPv4, unless `addressOrder: "ipv4-first"`. */
  readonly addresses: readonly string[];
  /** The address records were DNSSEC-validated (RFC 7672 §2.2.2: a condition for DANE). */
  readonly authentic?: true;
}

export type MxResult =
  /**
   * Sorted by preference, equal preferences shuffled; implicit when there was no MX and the domain's own A/AAAA were used (RFC 5321 §5.1).
   * `authentic`: the MX RRset (or, implicit, the domain's addresses) was DNSSEC-validated.
   */
  | { kind: "hosts"; hosts: MxHost[]; implicit: boolean; authentic?: true }
  /** RFC 7505 "0 .": the domain accepts no mail (5.1.10). */
  | { kind: "null-mx" }
  /** NXDOMAIN, no MX and no A/AAAA, or MX hosts that all do not exist. */
  | { kind: "permanent"; reason: string }
  /** SERVFAIL, REFUSED, timeout, network error, CNAME loop: retry later. */
  | { kind: "temporary"; reason: string };

/** At most this many exchanges (the most preferred) are resolved to addresses. */
export const MAX_EXCHANGES = 32;
/** Exchanges resolved at the same time. */
export const EXCHANGE_CONCURRENCY = 4;

export interface MxDependencies {
  lookup(name: NormalizedName, type: "MX"): Promise<LookupResult>;
  addresses(host: NormalizedName): Promise<HostAddresses>;
  random(): number;
}

interface Exchange {
  readonly exchange: NormalizedName;
  readonly preference: number;
}

export async function resolveMxHosts(domain: NormalizedName, deps: MxDependencies): Promise<MxResult> {
  const mx = await deps.lookup(domain, "MX");
  switch (mx.kind) {
    case "temporary":
      return { kind: "temporary", reason: mx.reason };
    case "nxdomain":
      return { kind: "permanent", reason: `${domain}: domain not found (NXDOMAIN)` };
    case "nodata":
      return implicitMx(domain, deps);
    case "records":
      break;
  }
  const records = mx.answers.map((a) => (a as MxAnswer).data);
  const targets: Exchange[] = [];
  let sawRoot = false;
  for (const record of records) {
    if (record.exchange === "." || record.exchange === "") {
      sawRoot = true;
      continue;
    }
    const name = normalizeName(record.exchange);
    if (name.ok) targets.push({ exchange: name.name, preference: record.preference ?? 0 });
  }
  // RFC 7505: "0 ." alone says the domain takes no mail. A "." among real MX records breaks
  // RFC 7505 §3; the real ones are used and the "." is skipped.
  if (targets.length === 0 && sawRoot) return { kind: "null-mx" };
  if (targets.length === 0) return { kind: "permanent", reason: `${domain}: MX records name no valid host` };

  const ordered = dedupe(orderByPreference(targets, deps.random)).slice(0, MAX_EXCHANGES);
  const resolved = await mapBounded(ordered, EXCHANGE_CONCURRENCY, (t) => deps.addresses(t.exchange));
  const hosts: MxHost[] = [];
  const temporary: string[] = [];
  const missing: string[] = [];
  ordered.forEach((t, i) => {
    const r = resolved[i];
    if (r.kind === "addresses") hosts.push({ exchange: t.exchange, preference: t.preference, addresses: r.addresses, ...(r.authentic ? { authentic: true as const } : {}) });
    else if (r.kind === "temporary") temporary.push(r.reason);
    else missing.push(`${t.exchange} (${r.kind === "nxdomain" ? "NXDOMAIN" : "no A/AAAA"})`);
  });
  if (hosts.length > 0) return { kind: "hosts", hosts, implicit: false, ...(mx.authentic ? { authentic: true as const } : {}) };
  if (temporary.length > 0) return { kind: "temporary", reason: `${domain}: no MX host address found: ${temporary.join("; ")}` };
  return { kind: "permanent", reason: `${domain}: MX hosts have no addresses: ${missing.join(", ")}` };
}

async function implicitMx(domain: NormalizedName, deps: MxDependencies): Promise<MxResult> {
  const own = await deps.addresses(domain);
  switch (own.kind) {
    case "addresses": {
      const authentic = own.authentic ? { authentic: true as const } : {};
      return { kind: "hosts", hosts: [{ exchange: domain, preference: 0, addresses: own.addresses, ...authentic }], implicit: true, ...authentic };
    }
    case "temporary":
      return { kind: "temporary", reason: own.reason };
    case "nxdomain":
      return { kind: "permanent", reason: `${domain}: domain not found (NXDOMAIN)` };
    case "nodata":
      return { kind: "permanent", reason: `${domain}: no MX and no A/AAAA records` };
  }
}

/** Sort by preference (lowest first); shuffle each group of equal preference (RFC 5321 §5.1). */
export function orderByPreference<T extends { preference: number }>(items: readonly T[], random: () => number): T[] {
  const sorted = [...items].sort((a, b) => a.preference - b.preference);
  let start = 0;
  while (start < sorted.length) {
    let end = start + 1;
    while (end < sorted.length && sorted[end].preference === sorted[start].preference) end++;
    for (let i = end - 1; i > start; i--) {
      const j = start + Math.min(i - start, Math.floor(random() * (i - start + 1)));
      [sorted[i], sorted[j]] = [sorted[j], sorted[i]];
    }
    start = end;
  }
  return sorted;
}

/** The same exchange listed twice is tried once, at its first (most preferred) place. */
function dedupe(items: Exchange[]): Exchange[] {
  const seen = new Set<string>();
  return items.filter((t) => (seen.has(t.exchange) ? false : (seen.add(t.exchange), true)));
}

export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
