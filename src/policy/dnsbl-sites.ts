import { isIP } from "node:net";
import { reverseName } from "../dns/names.ts";
import { expandIpv6, unmapIpv4 } from "../mail/networks.ts";

/**
 * DNS blocklists and allowlists (DNSxLs, RFC 5782) as postscreen weighs
 * them (postscreen_dnsbl_sites): each site is a zone, an optional filter on
 * the 127.0.0.x answer, and a weight — negative for an allowlist. A client
 * whose weights add up to the threshold is listed.
 *
 * Written in the configuration as postscreen does ("zen.spamhaus.org=127.0.0.[2..11]*3",
 * "list.dnswl.org=127.0.[0..255].[1..3]*-2") or as a mapping.
 */

/** A site as configured: plain data. */
export interface DnsblSiteSpec {
  /** The zone queried: "<reversed client address>.<zone>". */
  readonly zone: string;
  /** What the reply and the logs call the list (a zone with a secret query key in it should not be shown). */
  readonly name: string;
  /** Added to the client's score when listed; negative for an allowlist. */
  readonly weight: number;
  /** The answers that count (an answer pattern); absent: any 127.0.0.0/8 answer but the 127.255.255.x error codes. */
  readonly filter?: string;
}

/** A site ready to be asked: its filter compiled. */
export interface DnsblSite extends Omit<DnsblSiteSpec, "filter"> {
  readonly filter?: AnswerFilter;
}

/** A test on one A record of a DNSxL answer ("127.0.0.2"), with the pattern it came from. */
export interface AnswerFilter {
  readonly pattern: string;
  matches(address: string): boolean;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

export const SITE_ALLOWED =
  'expected a DNS list as postscreen writes it: "zone", "zone*weight", "zone=127.0.0.2" or "zone=127.0.0.[2..11;15]*3" (a negative weight for an allowlist)';

/** "zen.spamhaus.org=127.0.0.[2..11]*3" → zone, filter, weight. */
export function parseSite(text: string): Parsed<DnsblSiteSpec> {
  const m = /^([^=*\s]+)(?:=([^*\s]+))?(?:\*(-?\d{1,6}))?$/.exec(text.trim());
  if (!m) return { ok: false, reason: SITE_ALLOWED };
  return siteSpec({ zone: m[1], filter: m[2], weight: m[3] === undefined ? undefined : Number(m[3]) });
}

/** A site given as a mapping: the zone checked, the filter parsed, the defaults filled in. */
export function siteSpec(site: { zone: string; weight?: number; filter?: string; name?: string }): Parsed<DnsblSiteSpec> {
  const zone = zoneName(site.zone);
  if (zone === undefined) return { ok: false, reason: `"${site.zone}" is not a DNS zone name; ${SITE_ALLOWED}` };
  if (site.filter !== undefined) {
    const f = parseAnswerFilter(site.filter);
    if (!f.ok) return f;
  }
  const spec: DnsblSiteSpec = {
    zone, name: site.name ?? zone, weight: site.weight ?? 1, ...(site.filter !== undefined ? { filter: site.filter } : {}),
  };
  return { ok: true, value: spec };
}

/** The site with its filter compiled; the spec was checked by siteSpec (the configuration schema). */
export function compileSite(spec: DnsblSiteSpec): DnsblSite {
  if (spec.filter === undefined) return { zone: spec.zone, name: spec.name, weight: spec.weight };
  const f = parseAnswerFilter(spec.filter);
  if (!f.ok) throw new TypeError(f.reason);
  return { zone: spec.zone, name: spec.name, weight: spec.weight, filter: f.value };
}

/** A zone name: letters, digits, hyphens and underscores in dot-separated labels of at most 63 octets. */
export function zoneName(text: string): string | undefined {
  const zone = text.toLowerCase().replace(/\.$/, "");
  if (zone.length === 0 || zone.length > 200) return undefined;
  const labels = zone.split(".");
  if (labels.length < 2 || labels.some((l) => !/^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l))) return undefined;
  return zone;
}

/**
 * postscreen's answer pattern: four octets separated by dots, each a number
 * or a bracketed list of numbers and ranges separated by ";" —
 * "127.0.0.2", "127.0.0.[2..11]", "127.0.[0..255].[1;3;5..7]".
 */
export function parseAnswerFilter(pattern: string): Parsed<AnswerFilter> {
  const bad = { ok: false as const, reason: `"${pattern}" is not an answer pattern such as "127.0.0.2" or "127.0.0.[2..11;15]"` };
  const octets: ((n: number) => boolean)[] = [];
  let i = 0;
  const number = (): number | undefined => {
    const m = /^\d{1,3}/.exec(pattern.slice(i));
    if (!m || Number(m[0]) > 255) return undefined;
    i += m[0].length;
    return Number(m[0]);
  };
  for (let octet = 0; octet < 4; octet++) {
    if (octet > 0) {
      if (pattern[i] !== ".") return bad;
      i++;
    }
    if (pattern[i] === "[") {
      i++;
      const ranges: [number, number][] = [];
      for (;;) {
        const low = number();
        if (low === undefined) return bad;
        let high = low;
        if (pattern.startsWith("..", i)) {
          i += 2;
          const h = number();
          if (h === undefined || h < low) return bad;
          high = h;
        }
        ranges.push([low, high]);
        if (pattern[i] === ";") i++;
        else if (pattern[i] === "]") break;
        else return bad;
      }
      i++;
      octets.push((n) => ranges.some(([lo, hi]) => n >= lo && n <= hi));
    } else {
      const n = number();
      if (n === undefined) return bad;
      octets.push((x) => x === n);
    }
  }
  if (i !== pattern.length) return bad;
  return {
    ok: true,
    value: {
      pattern,
      matches(address: string): boolean {
        if (isIP(address) !== 4) return false;
        const parts = address.split(".").map(Number);
        return octets.every((test, k) => test(parts[k]));
      },
    },
  };
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
