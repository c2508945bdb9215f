/**
 * How a DNS list is written in the configuration: postscreen's
 * postscreen_dnsbl_sites syntax ("zen.spamhaus.org=127.0.0.[2..11]*3",
 * "list.dnswl.org=127.0.[0..255].[1..3]*-2") or a mapping { zone, weight,
 * filter, name } — parsed into plain data the DNSBL check is built from
 * (policy/checks/dnsbl.ts).
 */

/** An answer filter: per octet of the A record, the ranges of values that count. */
export interface AnswerPattern {
  /** As written, for logs. */
  readonly pattern: string;
  readonly octets: readonly (readonly (readonly [number, number])[])[];
}

export interface DnsblSiteSpec {
  /** The zone queried: "<reversed client address>.<zone>". */
  readonly zone: string;
  /** What the reply and the logs call the list (a zone with a secret query key in it should not be shown). */
  readonly name: string;
  /** Added to the client's score when listed; negative for an allowlist. */
  readonly weight: number;
  /** The answers that count; absent: any 127.0.0.0/8 answer but the 127.255.255.x error codes. */
  readonly filter?: AnswerPattern;
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
  let filter: AnswerPattern | undefined;
  if (site.filter !== undefined) {
    const f = parseAnswerPattern(site.filter);
    if (!f.ok) return f;
    filter = f.value;
  }
  return { ok: true, value: { zone, name: site.name ?? zone, weight: site.weight ?? 1, ...(filter ? { filter } : {}) } };
}

/** A zone name: letters, digits, hyphens and underscores in dot-separated labels of at most 63 octets. */
function zoneName(text: string): string | undefined {
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
export function parseAnswerPattern(pattern: string): Parsed<AnswerPattern> {
  const bad = { ok: false as const, reason: `"${pattern}" is not an answer pattern such as "127.0.0.2" or "127.0.0.[2..11;15]"` };
  const octets: (readonly [number, number])[][] = [];
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
    if (pattern[i] !== "[") {
      const n = number();
      if (n === undefined) return bad;
      octets.push([[n, n]]);
      continue;
    }
    i++;
    const ranges: (readonly [number, number])[] = [];
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
    octets.push(ranges);
  }
  if (i !== pattern.length) return bad;
  return { ok: true, value: { pattern, octets } };
}
