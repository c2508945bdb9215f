/**
 * Raw RRsets of the types message authentication asks for (SPF, DKIM, DMARC, ARC): one name and
 * type in, the records (after CNAMEs) or why there are none out — the distinction those RFCs
 * need between "the DNS says there is nothing" (NXDOMAIN, NODATA) and "the DNS could not say"
 * (a temporary failure: SERVFAIL, REFUSED, a timeout).
 */
import type { Answer, MxAnswer, StringAnswer, TxtAnswer } from "dns-packet";
import type { LookupResult } from "./lookup.ts";
import { normalizeName, type NormalizedName } from "./names.ts";

export type RecordKind = "A" | "AAAA" | "MX" | "TXT" | "PTR" | "CNAME";

export interface RecordData {
  readonly A: string;
  readonly AAAA: string;
  readonly MX: { readonly preference: number; readonly exchange: string };
  /** The character-strings of one TXT record, in order (not joined). */
  readonly TXT: readonly string[];
  readonly PTR: string;
  readonly CNAME: string;
}

export type RecordsResult<K extends RecordKind> =
  | { readonly kind: "records"; readonly records: RecordData[K][] }
  | { readonly kind: "nxdomain" }
  | { readonly kind: "nodata" }
  /** `timeout`: no server answered at all, as opposed to SERVFAIL or REFUSED. */
  | { readonly kind: "temporary"; readonly reason: string; readonly timeout: boolean }
  /** The name cannot be asked for (empty label, too long, …). */
  | { readonly kind: "invalid"; readonly reason: string };

export interface RecordResolver {
  resolveRecords<K extends RecordKind>(name: string, type: K): Promise<RecordsResult<K>>;
}

export async function resolveRecords<K extends RecordKind>(
  lookup: (name: NormalizedName, type: K) => Promise<LookupResult>,
  input: string,
  type: K,
): Promise<RecordsResult<K>> {
  const name = normalizeName(input);
  if (!name.ok) return { kind: "invalid", reason: name.reason };
  const r = await lookup(name.name, type);
  switch (r.kind) {
    case "records":
      return { kind: "records", records: r.answers.map((a) => recordData(a, type) as RecordData[K]) };
    case "nxdomain":
    case "nodata":
      return { kind: r.kind };
    case "temporary":
      return { kind: "temporary", reason: r.reason, timeout: r.timeout === true };
  }
}

function recordData(answer: Answer, type: RecordKind): RecordData[RecordKind] {
  switch (type) {
    case "MX": {
      const { preference, exchange } = (answer as MxAnswer).data;
      return { preference: preference ?? 0, exchange };
    }
    case "TXT": {
      const data = (answer as TxtAnswer).data;
      const parts = Array.isArray(data) ? data : [data];
      return parts.map((p) => (typeof p === "string" ? p : p.toString("utf8")));
    }
    default:
      return (answer as StringAnswer).data;
  }
}
