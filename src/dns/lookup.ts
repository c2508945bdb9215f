/**
 * The record lookup under the resolver: one name and type in, one RRset (or a negative answer,
 * or a temporary failure) out — asked of the configured servers in turn, CNAME chains
 * followed, and every outcome cached for as long as the DNS allows.
 *
 * Decisions:
 * - Servers are asked in order, `tries` rounds. A server that answered SERVFAIL, REFUSED or
 *   NOTIMP is not asked again for this question (it answered; asking again changes nothing);
 *   one that timed out or failed on the network is asked again in the next round. A FORMERR
 *   to a query with EDNS0 is retried at once without it (RFC 6891 §7).
 * - CNAME chains are followed to at most MAX_CNAMES links, whether the server put the whole
 *   chain in the answer or returned only the first CNAME (then the target is asked for).
 *   A loop or a longer chain is a *temporary* failure: it is a misconfiguration somebody may
 *   fix, the queue retries, and a message still failing after the queue lifetime bounces anyway.
 * - Positive answers are cached for the smallest TTL among the records used (CNAMEs included),
 *   at most one day; NXDOMAIN and NODATA for min(SOA TTL, SOA MINIMUM) (RFC 2308 §5), at most
 *   one hour, and not at all without an SOA; temporary failures for `failureTtl` (RFC 2308 §7).
 *   A TTL of 0 is not cached. The end of a chain that had to be asked for separately is also
 *   cached under its own name. Concurrent identical lookups share one query.
 * - Only the answer and authority (SOA) sections are read; records in the additional section
 *   are never trusted (an MX host's addresses are always asked for).
 * - Errors are values: nothing here throws to the caller; the unexpected becomes "temporary".
 * - With `dnssec`, queries carry the DO bit and an answer is `authentic` when every response
 *   it was built from (each link of a CNAME chain included) had the AD bit set by the
 *   validating resolver (RFC 4035 §3.2.3, RFC 6840 §5.7). Without it AD is never believed:
 *   only the operator knows whether the path to the resolver can be trusted.
 */
import type { Answer, DecodedPacket, RecordType, SoaAnswer, StringAnswer } from "dns-packet";
import { ExpiringLruCache } from "./cache.ts";
import type { Now } from "../mail/clock.ts";
import { formatServerAddress, wireName, type NormalizedName, type ServerAddress } from "./names.ts";
import { exchange, RCODE, type DnsQuestion, type ExchangeOutcome } from "./transport.ts";

export const MAX_CNAMES = 8;
export const MAX_POSITIVE_TTL_MS = 24 * 3600_000;
export const MAX_NEGATIVE_TTL_MS = 3600_000;

/** `cnames`: links followed to reach `owner` (absent: none). `authentic`: DNSSEC-validated (absent: not). */
export type LookupResult =
  | { kind: "records"; owner: NormalizedName; answers: Answer[]; cnames?: number; authentic?: true }
  | { kind: "nxdomain"; owner: NormalizedName; cnames?: number; authentic?: true }
  | { kind: "nodata"; owner: NormalizedName; cnames?: number; authentic?: true }
  /** `timeout`: no server answered at all (as opposed to SERVFAIL, REFUSED, a network error). */
  | { kind: "temporary"; reason: string; timeout?: boolean };

export interface LookupOptions {
  /** The servers, or where to get the current ones at each question (the system's may change). */
  readonly servers: readonly ServerAddress[] | (() => readonly ServerAddress[]);
  readonly timeoutMs: number;
  readonly tries: number;
  readonly cacheSize: number;
  readonly failureTtlMs: number;
  readonly clock: Now;
  /** Send DO and believe the AD bit of the answers (the servers validate and the path to them is trusted). */
  readonly dnssec?: boolean;
}

export interface LookupStats {
  /** Questions sent to a server (a UDP try and its TCP retry count once). */
  queries: number;
  tcpFallbacks: number;
  timeouts: number;
  /** Datagrams or messages dropped as not being the answer (spoofed, late, malformed). */
  ignoredPackets: number;
  cacheHits: number;
  cacheMisses: number;
  cacheSize: number;
}

type ServerAnswer = { kind: "answer"; packet: DecodedPacket; rcode: number } | { kind: "temporary"; reason: string; timeout: boolean };

const RCODE_NAMES: Record<number, string> = { 1: "FORMERR", 2: "SERVFAIL", 4: "NOTIMP", 5: "REFUSED" };

export class RecordLookup {
  private readonly options: LookupOptions;
  private readonly cache: ExpiringLruCache<LookupResult>;
  private readonly inFlight = new Map<string, Promise<LookupResult>>();
  private readonly abort = new AbortController();
  private readonly counters = { queries: 0, tcpFallbacks: 0, timeouts: 0, ignoredPackets: 0, cacheHits: 0, cacheMisses: 0 };

  constructor(options: LookupOptions) {
    if (typeof options.servers !== "function" && options.servers.length === 0) throw new Error("no DNS servers configured");
    this.options = options;
    this.cache = new ExpiringLruCache(options.cacheSize, options.clock);
  }

  /** The RRset of `type` at `name` (a normalised name), after CNAMEs. */
  lookup(name: NormalizedName, type: RecordType): Promise<LookupResult> {
    const key = `${type} ${name}`;
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      this.counters.cacheHits++;
      return Promise.resolve(cached);
    }
    const pending = this.inFlight.get(key);
    if (pending !== undefined) {
      this.counters.cacheHits++;
      return pending;
    }
    this.counters.cacheMisses++;
    const promise = this.resolveChain(name, type)
      .catch((err: unknown) => ({ result: { kind: "temporary", reason: `${name}/${type}: ${String(err)}` } as LookupResult, ttlMs: 0 }))
      .then(({ result, ttlMs }) => {
        this.inFlight.delete(key);
        if (!this.abort.signal.aborted) this.cache.set(key, result, ttlMs);
        return result;
      });
    this.inFlight.set(key, promise);
    return promise;
  }

  stats(): LookupStats {
    return { ...this.counters, cacheSize: this.cache.size };
  }

  /** Abort queries in flight (they end as temporary failures) and forget the cache. */
  close(): void {
    this.abort.abort();
    this.cache.clear();
  }

  private async resolveChain(name: NormalizedName, type: RecordType): Promise<{ result: LookupResult; ttlMs: number }> {
    const seen = new Set<string>([name]);
    let current = name;
    let cnames = 0;
    let ttl = Infinity; // seconds, the smallest TTL of the CNAMEs followed so far
    let authentic = this.options.dnssec === true; // every response so far had AD
    const failure = (reason: string, timeout = false) => ({
      result: (timeout ? { kind: "temporary", reason, timeout } : { kind: "temporary", reason }) as LookupResult,
      ttlMs: this.options.failureTtlMs,
    });
    const tooLong = () => failure(`${name}/${type}: CNAME chain longer than ${MAX_CNAMES}`);
    for (;;) {
      if (current !== name) {
        // The rest of the chain may be known already (another lookup asked for it).
        const known = this.cache.getWithTtl(`${type} ${current}`);
        if (known !== undefined) {
          const { value, ttlMs } = known;
          this.counters.cacheHits++;
          if (value.kind === "temporary") return { result: value, ttlMs };
          if (cnames + (value.cnames ?? 0) > MAX_CNAMES) return tooLong();
          return { result: withAuthentic({ ...value, cnames: cnames + (value.cnames ?? 0) }, authentic && value.authentic === true), ttlMs: Math.min(ttl * 1000, ttlMs) };
        }
      }
      const asked = await this.askServers({ name: current, type });
      if (asked.kind === "temporary") return failure(`${current}/${type}: ${asked.reason}`, asked.timeout);
      const segment = readSegment(asked.packet, asked.rcode, current, type);
      authentic &&= asked.packet.flag_ad === true;
      for (const link of segment.links) {
        if (seen.has(link.target)) return failure(`${name}/${type}: CNAME loop at ${link.target}`);
        if (++cnames > MAX_CNAMES) return tooLong();
        seen.add(link.target);
        ttl = Math.min(ttl, link.ttl);
      }
      if (segment.end === undefined) {
        // Only (part of) the chain came back, without a negative answer for its end: ask for the target.
        current = segment.owner;
        continue;
      }
      const { result, ttlMs } = segment.end;
      if (current !== name) {
        this.cache.set(`${type} ${current}`, withAuthentic({ ...result, cnames: segment.links.length }, this.options.dnssec === true && asked.packet.flag_ad === true), ttlMs);
      }
      return { result: withAuthentic({ ...result, cnames }, authentic), ttlMs: Math.min(ttl * 1000, ttlMs) };
    }
  }

  /** Ask the servers in turn until one gives an answer (NOERROR or NXDOMAIN). */
  private async askServers(question: DnsQuestion): Promise<ServerAnswer> {
    const { tries, timeoutMs } = this.options;
    const servers = typeof this.options.servers === "function" ? this.options.servers() : this.options.servers;
    const gaveUp = new Set<number>();
    const problems = new Map<string, string>();
    let answered = false; // some server said something (an rcode or a network error), not only silence
    for (let round = 0; round < tries; round++) {
      for (let i = 0; i < servers.length; i++) {
        if (gaveUp.has(i)) continue;
        const server = servers[i];
        const where = formatServerAddress(server);
        let outcome = await this.ask(server, question, true, timeoutMs);
        if (outcome.kind === "response" && outcome.rcode === RCODE.FORMERR) {
          outcome = await this.ask(server, question, false, timeoutMs);
        }
        if (this.abort.signal.aborted) return { kind: "temporary", reason: "resolver closed", timeout: false };
        if (outcome.kind === "response") {
          if (outcome.rcode === RCODE.NOERROR || outcome.rcode === RCODE.NXDOMAIN) {
            return { kind: "answer", packet: outcome.packet, rcode: outcome.rcode };
          }
          gaveUp.add(i);
          answered = true;
          problems.set(where, `${RCODE_NAMES[outcome.rcode] ?? `rcode ${outcome.rcode}`} from ${where}`);
        } else if (outcome.kind === "timeout") {
          this.counters.timeouts++;
          problems.set(where, `no answer from ${where} (${outcome.transport}, ${timeoutMs} ms)`);
        } else {
          answered = true;
          problems.set(where, `${where}: ${outcome.message}`);
        }
      }
    }
    return { kind: "temporary", reason: [...problems.values()].join("; "), timeout: !answered };
  }

  private ask(server: ServerAddress, question: DnsQuestion, edns: boolean, timeoutMs: number): Promise<ExchangeOutcome> {
    this.counters.queries++;
    return exchange(server, question, {
      timeoutMs,
      edns,
      dnssecOk: edns && this.options.dnssec === true,
      signal: this.abort.signal,
      onIgnored: () => this.counters.ignoredPackets++,
      onTcpFallback: () => this.counters.tcpFallbacks++,
    });
  }
}

/** `result` marked authentic, or without the mark. */
function withAuthentic<T extends Exclude<LookupResult, { kind: "temporary" }>>(result: T, authentic: boolean): T {
  const { authentic: _, ...rest } = result;
  return (authentic ? { ...rest, authentic: true } : rest) as T;
}

function ttlOf(rr: Answer): number {
  const ttl = (rr as { ttl?: number }).ttl;
  return typeof ttl === "number" && ttl >= 0 ? ttl : 0;
}

/**
 * What one response says about `start`: the CNAME links it gives from there, and the outcome at
 * the end of them (records, NXDOMAIN or NODATA with their TTL counting the links), or no
 * outcome when the chain stops without one and its last target must be asked for.
 */
interface Segment {
  links: { target: NormalizedName; ttl: number }[];
  owner: NormalizedName;
  end?: { result: Exclude<LookupResult, { kind: "temporary" }>; ttlMs: number };
}

function readSegment(packet: DecodedPacket, rcode: number, start: NormalizedName, type: RecordType): Segment {
  const answers = (packet.answers ?? []).filter((a) => a.type !== "OPT" && ((a as { class?: string }).class ?? "IN") === "IN");
  const links: Segment["links"] = [];
  const walked = new Set<string>([start]);
  let owner = start;
  let ttl = Infinity;
  for (;;) {
    const rrset = answers.filter((a) => a.type === type && wireName(a.name) === owner);
    if (rrset.length > 0) {
      for (const rr of rrset) ttl = Math.min(ttl, ttlOf(rr));
      return { links, owner, end: { result: { kind: "records", owner, answers: rrset }, ttlMs: Math.min(ttl * 1000, MAX_POSITIVE_TTL_MS) } };
    }
    const cname = answers.find((a) => a.type === "CNAME" && wireName(a.name) === owner);
    if (cname === undefined) break;
    const target = wireName((cname as StringAnswer).data);
    links.push({ target, ttl: ttlOf(cname) });
    ttl = Math.min(ttl, ttlOf(cname));
    if (walked.has(target)) return { links, owner }; // a loop: the caller sees it in the links
    walked.add(target);
    owner = target;
  }
  const soa = (packet.authorities ?? []).find((a): a is SoaAnswer => a.type === "SOA");
  if (owner !== start && rcode === RCODE.NOERROR && soa === undefined) return { links, owner };
  const ttlMs = soa === undefined ? 0 : Math.min(Math.min(ttl, ttlOf(soa), soa.data.minimum ?? 0) * 1000, MAX_NEGATIVE_TTL_MS);
  const kind = rcode === RCODE.NXDOMAIN ? "nxdomain" : "nodata";
  return { links, owner, end: { result: { kind, owner }, ttlMs } };
}
