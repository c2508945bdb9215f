/**
 * The resolver the delivery agents and policy checks ask: MX, A/AAAA, TXT and TLSA (and the raw
 * RRsets message authentication needs, records.ts), spoken over the
 * real DNS wire protocol to configured servers (default: the system's, from /etc/resolv.conf, re-read when it changes),
 * with a cache. Answers are values: "hosts", "null-mx", "permanent" (the DNS says no: bounce)
 * or "temporary" (the DNS could not say: retry later). With `dnssec`, answers the validating
 * resolver vouched for (AD bit) say so (`authentic`), which DANE needs (tlsa.ts).
 */
import { systemClock, type Now } from "../mail/clock.ts";
import { lookupHostAddresses, type AddressOrder, type HostAddresses } from "./addresses.ts";
import { RecordLookup, type LookupStats } from "./lookup.ts";
import { resolveMxHosts, type MxHost, type MxResult } from "./mx.ts";

export type { MxHost, MxResult };
import { normalizeName, parseServerAddress } from "./names.ts";
import { SystemNameservers, type NameserverReport } from "./resolv-conf.ts";
import { resolveRecords, type RecordResolver } from "./records.ts";
import { resolveTlsa, type TlsaResolver } from "./tlsa.ts";
import type { TxtAnswer } from "dns-packet";


export type AddressResult = { kind: "addresses"; addresses: string[] } | { kind: "permanent" | "temporary"; reason: string };

/** NODATA is an empty list of records; NXDOMAIN is permanent. Each record's strings are joined without separator (RFC 7208 §3.3). */
export type TxtResult = { kind: "txt"; records: string[] } | { kind: "permanent" | "temporary"; reason: string };

export interface Resolver extends TlsaResolver {
  resolveMx(domain: string): Promise<MxResult>;
  /** A/AAAA for a host (after CNAMEs). */
  resolveAddresses(host: string): Promise<AddressResult>;
  resolveTxt(name: string): Promise<TxtResult>;
}

export interface ResolverOptions {
  /** "address", "address:port", "[v6]:port"; absent or empty: the system's, from resolv.conf. */
  servers?: string[];
  /** The system's resolver configuration (default /etc/resolv.conf), when `servers` is empty. */
  resolvConf?: string;
  /** How often resolv.conf is looked at for changes, ms (default 5000). */
  resolvConfCheckInterval?: number;
  /** Per try, ms (default 3000). */
  timeout?: number;
  /** Rounds over the servers (default 2). */
  tries?: number;
  /** Cache entries (default 10000). */
  cacheSize?: number;
  /** How long a temporary failure is remembered, ms (default 30000; 0 = not at all). */
  failureTtl?: number;
  clock?: Now;
  /** For shuffling equal MX preferences; [0, 1). */
  random?: () => number;
  /** Ask for AAAA too (default true). */
  ipv6?: boolean;
  /** Order of addresses in a host's list (default "ipv6-first"). */
  addressOrder?: AddressOrder;
  /**
   * The servers validate DNSSEC and the path to them is trusted (a resolver on loopback): send
   * DO and believe their AD bit (default false). Without it nothing is `authentic` and DANE is off.
   */
  dnssec?: boolean;
}

export type ResolverStats = LookupStats;

export interface ClosableResolver extends Resolver, RecordResolver {
  /** Abort lookups in flight (they end "temporary") and drop the cache. */
  close(): void;
  stats(): ResolverStats;
  /** Which servers are asked, and from where. */
  nameservers(): NameserverReport;
  /** Read resolv.conf again now (SIGHUP); nothing when servers are configured. */
  reloadNameservers(): void;
  /** Ask these servers from now on ("" list: the system's, from resolv.conf) — a reload of dns.servers. */
  setServers(servers: readonly string[]): void;
}

export function createResolver(options: ResolverOptions = {}): ClosableResolver {
  let configured: readonly string[] = options.servers ?? [];
  const systemNameservers = () => new SystemNameservers({ path: options.resolvConf, checkIntervalMs: options.resolvConfCheckInterval, clock: options.clock });
  let system = configured.length === 0 ? systemNameservers() : undefined;
  let fixed = configured.map(parseServerAddress);
  const records = new RecordLookup({
    servers: () => system ? system.current() : fixed,
    timeoutMs: options.timeout ?? 3000,
    tries: Math.max(1, options.tries ?? 2),
    cacheSize: options.cacheSize ?? 10_000,
    failureTtlMs: options.failureTtl ?? 30_000,
    clock: options.clock ?? systemClock,
    dnssec: options.dnssec === true,
  });
  const random = options.random ?? Math.random;
  const addressOptions = { ipv6: options.ipv6 ?? true, order: options.addressOrder ?? "ipv6-first" } as const;
  const addresses = (host: string): Promise<HostAddresses> =>
    lookupHostAddresses(host, (name, type) => records.lookup(name, type), addressOptions);

  return {
    async resolveMx(domain) {
      const name = normalizeName(domain);
      if (!name.ok) return { kind: "permanent", reason: name.reason };
      return resolveMxHosts(name.name, { lookup: (n, t) => records.lookup(n, t), addresses, random });
    },

    async resolveAddresses(host) {
      const name = normalizeName(host);
      if (!name.ok) return { kind: "permanent", reason: name.reason };
      const r = await addresses(name.name);
      switch (r.kind) {
        case "addresses":
        case "temporary":
          return r;
        case "nxdomain":
          return { kind: "permanent", reason: `${name.name}: host not found (NXDOMAIN)` };
        case "nodata":
          return { kind: "permanent", reason: `${name.name}: no A/AAAA records` };
      }
    },

    async resolveTxt(input) {
      const name = normalizeName(input);
      if (!name.ok) return { kind: "permanent", reason: name.reason };
      const r = await records.lookup(name.name, "TXT");
      switch (r.kind) {
        case "records":
          return { kind: "txt", records: r.answers.map((a) => txtString((a as TxtAnswer).data)) };
        case "nodata":
          return { kind: "txt", records: [] };
        case "nxdomain":
          return { kind: "permanent", reason: `${name.name}: domain not found (NXDOMAIN)` };
        case "temporary":
          return r;
      }
    },

    resolveRecords: (name, type) => resolveRecords((n, t) => records.lookup(n, t), name, type),
    resolveTlsa: (host, port) => resolveTlsa((n, t) => records.lookup(n, t), host, port),

    close: () => records.close(),
    stats: () => records.stats(),
    nameservers: () => system?.report() ?? { source: "dns.servers", servers: [...configured], fallback: false },
    reloadNameservers: () => system?.reload(),
    setServers(servers) {
      fixed = servers.map(parseServerAddress);
      configured = [...servers];
      system = servers.length === 0 ? system ?? systemNameservers() : undefined;
    },
  };
}

function txtString(data: TxtAnswer["data"]): string {
  const parts = Array.isArray(data) ? data : [data];
  return Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : p))).toString("utf8");
}
