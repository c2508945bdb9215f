/**
 * A host's addresses: its A and AAAA RRsets (after CNAMEs), asked for at the same time.
 * An address found in one family is enough even if the other family's lookup failed.
 */
import type { StringAnswer } from "dns-packet";
import type { LookupResult } from "./lookup.ts";
import type { NormalizedName } from "./names.ts";

export type HostAddresses =
  /** `authentic`: both the A and the AAAA answer were DNSSEC-validated (lookup.ts). */
  | { kind: "addresses"; addresses: string[]; authentic?: true }
  | { kind: "nxdomain" }
  | { kind: "nodata" }
  | { kind: "temporary"; reason: string };

export type AddressOrder = "ipv6-first" | "ipv4-first";

export interface AddressOptions {
  readonly ipv6: boolean;
  readonly order: AddressOrder;
}

export async function lookupHostAddresses(
  host: NormalizedName,
  lookup: (name: NormalizedName, type: "A" | "AAAA") => Promise<LookupResult>,
  options: AddressOptions,
): Promise<HostAddresses> {
  const [v4, v6] = await Promise.all([
    lookup(host, "A"),
    options.ipv6 ? lookup(host, "AAAA") : Promise.resolve<LookupResult>({ kind: "nodata", owner: host }),
  ]);
  const list = (r: LookupResult) => (r.kind === "records" ? r.answers.map((a) => (a as StringAnswer).data) : []);
  const addresses = options.order === "ipv6-first" ? [...list(v6), ...list(v4)] : [...list(v4), ...list(v6)];
  if (addresses.length > 0) {
    const authentic = [v4, v6].every((r) => r.kind !== "temporary" && r.authentic === true);
    return { kind: "addresses", addresses: [...new Set(addresses)], ...(authentic ? { authentic } : {}) };
  }
  // NXDOMAIN says the name does not exist at all, whatever the other query said.
  if (v4.kind === "nxdomain" || v6.kind === "nxdomain") return { kind: "nxdomain" };
  const failures = [v4, v6].filter((r): r is Extract<LookupResult, { kind: "temporary" }> => r.kind === "temporary");
  if (failures.length > 0) return { kind: "temporary", reason: failures.map((f) => f.reason).join("; ") };
  return { kind: "nodata" };
}
