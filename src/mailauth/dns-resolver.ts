/**
 * mailauth asks the DNS through one function, `resolver(name, rrtype)`, shaped like Node's
 * `dns.promises.resolve`: it returns the records, or throws an error whose `code` decides the
 * result. ENOTFOUND (NXDOMAIN) and ENODATA (no records of that type) mean "nothing published":
 * SPF counts them as void lookups (RFC 7208 §4.6.4), DKIM and DMARC read them as no key or no
 * policy. Any other code (ETIMEOUT, ESERVFAIL) is a temporary failure: temperror. EBADNAME is a
 * name that cannot exist, SPF's permerror.
 *
 * This adapter answers it from Petrel's own resolver, so the configured servers, the cache and
 * the loopback DNS server of the tests apply to message authentication as to delivery.
 */
import type { RecordData, RecordKind, RecordResolver } from "../dns/records.ts";

export type MailauthResolver = (name: string, rrtype: string) => Promise<unknown[]>;

const KINDS: ReadonlySet<string> = new Set<RecordKind>(["A", "AAAA", "MX", "TXT", "PTR", "CNAME"]);

export class DnsLookupError extends Error {
  readonly code: string;
  readonly hostname: string;

  constructor(code: string, hostname: string, message: string) {
    super(message);
    this.name = "DnsLookupError";
    this.code = code;
    this.hostname = hostname;
  }
}

export function mailauthResolver(resolver: RecordResolver): MailauthResolver {
  return async (name, rrtype) => {
    const type = rrtype.toUpperCase();
    if (!KINDS.has(type)) throw new DnsLookupError("ENOTIMP", name, `${name}/${type}: record type not supported`);
    const r = await resolver.resolveRecords(name, type as RecordKind);
    switch (r.kind) {
      case "records":
        return r.records.map((record) => nodeShape(type as RecordKind, record));
      case "nxdomain":
        throw new DnsLookupError("ENOTFOUND", name, `${name}/${type}: domain not found (NXDOMAIN)`);
      case "nodata":
        throw new DnsLookupError("ENODATA", name, `${name}/${type}: no records`);
      case "invalid":
        throw new DnsLookupError("EBADNAME", name, r.reason);
      case "temporary":
        throw new DnsLookupError(r.timeout ? "ETIMEOUT" : "ESERVFAIL", name, r.reason);
    }
  };
}

/** MX as { exchange, priority }, TXT as a fresh array of character-strings, the rest as strings. */
function nodeShape(type: RecordKind, record: RecordData[RecordKind]): unknown {
  if (type === "MX") {
    const mx = record as RecordData["MX"];
    return { exchange: mx.exchange, priority: mx.preference };
  }
  if (type === "TXT") return [...(record as RecordData["TXT"])];
  return record;
}
