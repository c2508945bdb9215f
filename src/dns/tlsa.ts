/**
 * TLSA records (RFC 6698 §2) of a TLS service, `_<port>._tcp.<host>` (RFC 6698 §3), as DANE
 * for SMTP needs them (RFC 7672 §2.2): the records and whether the validating resolver vouched
 * for them (`authentic`, the AD bit — only believed with `dns.dnssec`, lookup.ts). Records that
 * are not authentic must not be used; a secure "none" (NXDOMAIN or NODATA with AD) says the
 * host has no DANE; a lookup that fails (a validating resolver answers SERVFAIL for bogus data)
 * is "temporary": the host may not be used until it can be checked (RFC 7672 §2.2).
 */
import type { TlsaAnswer } from "dns-packet";
import type { LookupResult } from "./lookup.ts";
import { normalizeName, type NormalizedName } from "./names.ts";

export interface TlsaRecord {
  /** Certificate usage: 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE (RFC 7218). */
  readonly usage: number;
  /** 0 the full certificate, 1 its SubjectPublicKeyInfo. */
  readonly selector: number;
  /** 0 the data itself, 1 SHA-256, 2 SHA-512. */
  readonly matchingType: number;
  readonly data: Buffer;
}

export type TlsaResult =
  | { readonly kind: "records"; readonly name: string; readonly records: readonly TlsaRecord[]; readonly authentic: boolean }
  | { readonly kind: "none"; readonly name: string; readonly authentic: boolean }
  | { readonly kind: "temporary"; readonly name: string; readonly reason: string };

export interface TlsaResolver {
  /** The TLSA RRset of `_<port>._tcp.<host>`. */
  resolveTlsa(host: string, port: number): Promise<TlsaResult>;
}

/** `_25._tcp.mx.example.com`. */
export function tlsaName(host: string, port: number): string {
  return `_${port}._tcp.${host}`;
}

export async function resolveTlsa(
  lookup: (name: NormalizedName, type: "TLSA") => Promise<LookupResult>,
  host: string,
  port: number,
): Promise<TlsaResult> {
  const name = normalizeName(tlsaName(host, port));
  if (!name.ok) return { kind: "temporary", name: tlsaName(host, port), reason: name.reason };
  const r = await lookup(name.name, "TLSA");
  switch (r.kind) {
    case "records":
      return {
        kind: "records",
        name: name.name,
        records: r.answers.map((a) => {
          const d = (a as TlsaAnswer).data;
          return { usage: d.usage, selector: d.selector, matchingType: d.matchingType, data: Buffer.from(d.certificate) };
        }),
        authentic: r.authentic === true,
      };
    case "nxdomain":
    case "nodata":
      return { kind: "none", name: name.name, authentic: r.authentic === true };
    case "temporary":
      return { kind: "temporary", name: name.name, reason: r.reason };
  }
}

/** A TLSA record in presentation form, "3 1 1 8f0e…" (RFC 6698 §2.2), as TLS-RPT's policy-string carries it. */
export function formatTlsa(r: TlsaRecord): string {
  return `${r.usage} ${r.selector} ${r.matchingType} ${r.data.toString("hex")}`;
}
