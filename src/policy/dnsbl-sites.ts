import { isIP } from "node:net";
import { reverseName } from "../dns/names.ts";
import { expandIpv6, unmapIpv4 } from "../mail/networks.ts";

/**
 * DNS blocklists and allowlists (DNSxLs, RFC 5782) as postscreen weighs
 * them (postscreen_dnsbl_sites): each site is a zone, an optional filter on
 * the 127.0.0.x answer, and a weight — negative for an allowlist. How a
 * site is written in the configuration is config/dnsbl-sites.ts's.
 */

export interface DnsblSite {
  /** The zone queried: "<reversed client address>.<zone>". */
  readonly zone: string;
  /** What the reply and the logs call the list. */
  readonly name: string;
  /** Added to the client's score when listed; negative for an allowlist. */
  readonly weight: number;
  /** The answers that count, per octet the ranges of values; absent: see isListingAnswer. */
  readonly filter?: {
    readonly pattern: string;
    readonly octets: readonly (readonly (readonly [number, number])[])[];
  };
}

/** Does an A record of the answer ("127.0.0.2") count for this site? */
export function countsFor(site: DnsblSite, address: string): boolean {
  if (isRefusalAnswer(address)) return false;
  if (!site.filter) return isListingAnswer(address);
  if (isIP(address) !== 4) return false;
  const parts = address.split(".").map(Number);
  return site.filter.octets.every((ranges, k) => ranges.some(([low, high]) => parts[k] >= low && parts[k] <= high));
}

/**
 * Without a filter an answer counts when it is in 127.0.0.0/8 (RFC 5782
 * §2.1: entries are A records there, so a zone that answers everything with
 * a real address — an expired list domain, a resolver that rewrites NXDOMAIN
 * — does not list the whole internet), except 127.255.255.0/24, which lists
 * such as Spamhaus use to say the query itself was refused (an open
 * resolver, too many queries).
 */
export function isListingAnswer(address: string): boolean {
  return address.startsWith("127.") && !isRefusalAnswer(address) && isIP(address) === 4;
}

/** 127.255.255.x: the list refused to answer this resolver; never a listing. */
export function isRefusalAnswer(address: string): boolean {
  return address.startsWith("127.255.255.");
}

/**
 * The labels a client address is looked up under (RFC 5782 §2.1, §2.4):
 * IPv4 octets reversed ("2.0.0.127" for 127.0.0.2), IPv6 as 32 reversed
 * nibbles ("1.0.0.0…0.0" for ::1). An IPv4-mapped client is an IPv4 client.
 */
export function reversedClient(address: string): string | undefined {
  const ip = unmapIpv4(address);
  const family = isIP(ip);
  if (family === 4) return reverseName(ip).replace(/\.in-addr\.arpa$/, "");
  const full = family === 6 ? expandIpv6(ip) : undefined;
  return full === undefined ? undefined : reverseName(full).replace(/\.ip6\.arpa$/, "");
}
