/**
 * `petrel dns --check`: each record to publish compared with what the DNS (the configured
 * resolvers) answers, in plain words. A record need not be the suggested text to be right: an
 * SPF record is right when it lets this server send (evaluated with Petrel's SPF check for each
 * of the server's addresses), a DKIM record when it holds the same key, a DMARC record when
 * there is exactly one valid one. Beyond the domain's own zone, the server's name must have an
 * address, and that address a PTR record naming it back (forward-confirmed reverse DNS, which
 * the large mailbox providers require of senders; the address's owner — the hosting provider —
 * publishes it).
 */
import type { RecordResolver, RecordsResult } from "../dns/records.ts";
import type { Resolver } from "../dns/resolver.ts";
import { recordPublicKey } from "../mailauth/dkim-keys.ts";
import { mailauthResolver } from "../mailauth/dns-resolver.ts";
import { checkSpfMailFrom } from "../mailauth/spf.ts";
import { reverseName } from "../dns/names.ts";
import type { PublishedRecord } from "./records.ts";

export type CheckStatus = "ok" | "missing" | "wrong" | "unknown";

export interface RecordCheck {
  /** The record kind, or "PTR" for the reverse DNS of the server's addresses. */
  readonly kind: string;
  readonly status: CheckStatus;
  readonly text: string;
}

export interface CheckDependencies {
  readonly resolver: Resolver & RecordResolver;
  /** This server's name: what MX must name and SPF must allow. */
  readonly hostname: string;
  /** The name it gives in EHLO when sending (`outbound.heloName`), which reverse DNS must give back; default `hostname`. */
  readonly heloName?: string;
  /** The addresses its mail leaves from (`outbound.sourceAddress`); default the HELO name's addresses. */
  readonly sendingAddresses?: readonly string[];
}

export async function checkRecords(records: readonly PublishedRecord[], deps: CheckDependencies): Promise<RecordCheck[]> {
  const [checks, reverse] = await Promise.all([Promise.all(records.map((r) => checkRecord(r, deps))), checkReverseDns(deps)]);
  return [...checks, ...reverse];
}

export function formatCheck(c: RecordCheck): string {
  return `${c.kind.padEnd(6)} ${c.status.padEnd(8)} ${c.text}`;
}

async function checkRecord(record: PublishedRecord, deps: CheckDependencies): Promise<RecordCheck> {
  const result = (status: CheckStatus, text: string): RecordCheck => ({ kind: record.kind, status, text });
  switch (record.kind) {
    case "MX": {
      const r = await deps.resolver.resolveRecords(record.name, "MX");
      if (r.kind !== "records") return absent(result, record, r, "MX");
      const names = r.records.map((mx) => `${mx.preference} ${mx.exchange}`);
      if (r.records.some((mx) => sameName(mx.exchange, deps.hostname))) {
        const addresses = await deps.resolver.resolveAddresses(deps.hostname);
        if (addresses.kind === "addresses") return result("ok", `${record.name} MX ${names.join(", ")}; ${deps.hostname} is ${addresses.addresses.join(", ")}`);
        return result("wrong", `${record.name} MX ${names.join(", ")}, but ${deps.hostname} has no address (${addresses.reason}): publish its A (and AAAA) record`);
      }
      return result("wrong", `${record.name} MX ${names.join(", ")}: mail for it goes there, not to ${deps.hostname}; publish "${record.value}"`);
    }
    case "SPF": {
      const r = await deps.resolver.resolveRecords(record.name, "TXT");
      if (r.kind !== "records" && r.kind !== "nodata") return absent(result, record, r, "TXT");
      const spf = r.kind === "records" ? r.records.map((t) => t.join("")).filter((t) => /^v=spf1(\s|$)/i.test(t)) : [];
      if (spf.length === 0) return result("missing", `${record.name}: no SPF record; publish "${record.value}"`);
      if (spf.length > 1) return result("wrong", `${record.name}: ${spf.length} SPF records ("${spf.join('", "')}"): receivers treat that as an error (permerror); merge them into one`);
      return checkSpfAllows(record, spf[0], deps, result);
    }
    case "DKIM": {
      const r = await deps.resolver.resolveRecords(record.name, "TXT");
      if (r.kind !== "records" && r.kind !== "nodata") return absent(result, record, r, "TXT");
      const keys = r.kind === "records" ? r.records.map((t) => t.join("")).filter((t) => recordPublicKey(t) !== undefined) : [];
      if (keys.length === 0) return result("missing", `${record.name}: no DKIM key record; publish the record petrel dns prints`);
      if (keys.some((k) => recordPublicKey(k) === recordPublicKey(record.value))) return result("ok", `${record.name}: the key matches`);
      return result("wrong", `${record.name}: a different key is published (p=${abbreviate(recordPublicKey(keys[0]) ?? "")}); mail signed with this key would fail DKIM`);
    }
    case "DMARC": {
      const r = await deps.resolver.resolveRecords(record.name, "TXT");
      if (r.kind !== "records" && r.kind !== "nodata") return absent(result, record, r, "TXT");
      const dmarc = r.kind === "records" ? r.records.map((t) => t.join("")).filter((t) => /^v=DMARC1\s*(;|$)/.test(t)) : [];
      if (dmarc.length === 0) return result("missing", `${record.name}: no DMARC record; publish "${record.value}"`);
      if (dmarc.length > 1) return result("wrong", `${record.name}: ${dmarc.length} DMARC records: receivers ignore them all; keep one`);
      const p = /(?:^|;)\s*p\s*=\s*(none|quarantine|reject)\s*(;|$)/i.exec(dmarc[0])?.[1]?.toLowerCase();
      if (p === undefined) return result("wrong", `${record.name}: "${dmarc[0]}" has no valid p= (none, quarantine or reject)`);
      const rua = /(?:^|;)\s*rua\s*=/i.test(dmarc[0]) ? "" : "; it has no rua=, so no reports come back";
      const meaning = p === "none" ? "reports only" : p === "quarantine" ? "failing mail goes to spam" : "failing mail is refused";
      return result("ok", `${record.name}: "${dmarc[0]}" (p=${p}: ${meaning})${rua}`);
    }
    case "MTA-STS": {
      if (record.type === "CNAME") {
        const r = await deps.resolver.resolveAddresses(record.name);
        if (r.kind !== "addresses") return result("missing", `${record.name}: no address (${r.reason}); publish "${record.name}. IN CNAME ${record.value}" so senders can fetch the policy`);
        return result("ok", `${record.name} is ${r.addresses.join(", ")}`);
      }
      const r = await deps.resolver.resolveRecords(record.name, "TXT");
      if (r.kind !== "records" && r.kind !== "nodata") return absent(result, record, r, "TXT");
      const sts = r.kind === "records" ? r.records.map((t) => t.join("")).filter((t) => /^v=STSv1\s*;/.test(t)) : [];
      if (sts.length === 0) return result("missing", `${record.name}: no MTA-STS record; publish "${record.value}"`);
      // RFC 8461 §3.1: with more than one record, senders assume there is no policy.
      if (sts.length > 1) return result("wrong", `${record.name}: ${sts.length} MTA-STS records: senders ignore them all; keep one`);
      const id = (t: string) => /(?:^|;)\s*id\s*=\s*([A-Za-z0-9]{1,32})\s*(;|$)/.exec(t)?.[1];
      if (id(sts[0]) !== id(record.value)) return result("wrong", `${record.name}: "${sts[0]}" names another policy id; senders that cached an older policy keep it: publish "${record.value}"`);
      return result("ok", `${record.name}: "${sts[0]}" (the id of the policy served)`);
    }
    case "TLS-RPT": {
      const r = await deps.resolver.resolveRecords(record.name, "TXT");
      if (r.kind !== "records" && r.kind !== "nodata") return absent(result, record, r, "TXT");
      const rpt = r.kind === "records" ? r.records.map((t) => t.join("")).filter((t) => /^v=TLSRPTv1\s*;/.test(t)) : [];
      if (rpt.length === 0) return result("missing", `${record.name}: no TLS-RPT record; publish "${record.value}"`);
      if (rpt.length > 1) return result("wrong", `${record.name}: ${rpt.length} TLS-RPT records: senders ignore them all (RFC 8460 §3); keep one`);
      return result("ok", `${record.name}: "${rpt[0]}"`);
    }
  }
}

async function checkSpfAllows(
  record: PublishedRecord,
  published: string,
  deps: CheckDependencies,
  result: (status: CheckStatus, text: string) => RecordCheck,
): Promise<RecordCheck> {
  const addresses = await deps.resolver.resolveAddresses(deps.hostname);
  if (addresses.kind !== "addresses") {
    return result("unknown", `${record.name}: "${published}" — cannot tell whether it lets this server send: ${deps.hostname} has no address (${addresses.reason})`);
  }
  const resolver = mailauthResolver(deps.resolver);
  const outcomes = await Promise.all(
    addresses.addresses.map(async (ip) => ({
      ip,
      spf: await checkSpfMailFrom({ ip, helo: deps.hostname }, `postmaster@${record.name}`, { resolver, hostname: deps.hostname }),
    })),
  );
  const refused = outcomes.filter((o) => o.spf.result !== "pass");
  if (refused.length === 0) return result("ok", `${record.name}: "${published}" lets ${deps.hostname} (${addresses.addresses.join(", ")}) send`);
  const what = refused.map((o) => `${o.spf.result} for ${o.ip}`).join(", ");
  return result("wrong", `${record.name}: "${published}" gives ${what} (${deps.hostname}): this server may not send for ${record.name}; add it, e.g. "${record.value}"`);
}

/**
 * Each address mail leaves from must have a PTR record naming the HELO name, and that name must
 * have the address (forward-confirmed reverse DNS, RFC 8601 §3's "iprev").
 */
async function checkReverseDns(deps: CheckDependencies): Promise<RecordCheck[]> {
  const helo = deps.heloName ?? deps.hostname;
  const forward = await deps.resolver.resolveAddresses(helo);
  const heloAddresses = forward.kind === "addresses" ? forward.addresses : [];
  const addresses = deps.sendingAddresses && deps.sendingAddresses.length > 0 ? deps.sendingAddresses : heloAddresses;
  return Promise.all(
    addresses.map(async (ip): Promise<RecordCheck> => {
      const r = await deps.resolver.resolveRecords(reverseName(ip), "PTR");
      const line = (status: CheckStatus, text: string): RecordCheck => ({ kind: "PTR", status, text });
      if (r.kind === "temporary") return line("unknown", `${ip}: the DNS did not answer (${r.reason}); try again`);
      const names = r.kind === "records" ? r.records : [];
      if (names.some((n) => sameName(n, helo))) {
        if (heloAddresses.includes(ip)) return line("ok", `${ip} is ${helo}`);
        return line("wrong", `${ip}: its PTR names ${helo}, but ${helo} does not have the address ${ip}: add it to ${helo}'s A or AAAA records`);
      }
      const found = names.length > 0 ? `its PTR names ${names.join(", ")}` : "it has no PTR record";
      return line("wrong", `${ip}: ${found}; large mailbox providers refuse mail from an address whose name does not lead back to it: ask its provider to set the PTR to ${helo}`);
    }),
  );
}

function absent(
  result: (status: CheckStatus, text: string) => RecordCheck,
  record: PublishedRecord,
  r: Exclude<RecordsResult<"MX" | "TXT">, { kind: "records" }>,
  type: string,
): RecordCheck {
  switch (r.kind) {
    case "nxdomain":
      return result("missing", `${record.name}: no ${record.kind} record (the name does not exist); publish the record petrel dns prints`);
    case "nodata":
      return result("missing", `${record.name}: no ${type} record; publish the record petrel dns prints`);
    case "temporary":
      return result("unknown", `${record.name}: the DNS did not answer (${r.reason}); try again`);
    case "invalid":
      return result("unknown", `${record.name}: ${r.reason}`);
  }
}

function sameName(a: string, b: string): boolean {
  const norm = (s: string) => s.toLowerCase().replace(/\.$/, "");
  return norm(a) === norm(b);
}

function abbreviate(s: string): string {
  return s.length > 24 ? `${s.slice(0, 12)}…${s.slice(-8)}` : s;
}
