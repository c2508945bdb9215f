/**
 * A DNS server on loopback for tests: answers from a zone given as a plain object, over UDP and
 * TCP on the same port, like a recursive resolver would (CNAME chains followed into the answer,
 * NXDOMAIN/NODATA with an SOA, EDNS0 echoed, truncation over UDP when the answer is too big).
 * Behaviours per name make it fail on purpose; every question it receives is logged.
 *
 *   const dns = await startDnsServer({
 *     "a.test": { MX: [[10, "mx.a.test"]], A: ["127.0.0.2"] },
 *     "mx.a.test": { A: ["127.0.0.2"], AAAA: ["::1"] },
 *     "null.test": { MX: [[0, "."]] },
 *     "alias.test": { CNAME: "a.test" },
 *     "test": { SOA: { minimum: 60 } },
 *   });
 *   createResolver({ servers: [dns.server] });
 */
import dgram from "node:dgram";
import net from "node:net";
import dnsPacket from "dns-packet";
import { requireRoot } from "./peers.ts";
import type { Answer, DecodedPacket, Packet, RecordType } from "dns-packet";

export { reverseName } from "../../src/dns/names.ts";

/** Records as a list (TTL 300) or with their TTL in seconds. */
export type RecordSet<T> = readonly T[] | { readonly ttl: number; readonly records: readonly T[] };

export interface ZoneEntry {
  /** [preference, exchange]; [0, "."] is the null MX. */
  readonly MX?: RecordSet<readonly [number, string]>;
  readonly A?: RecordSet<string>;
  readonly AAAA?: RecordSet<string>;
  /** A string, or the character-strings of one record. */
  readonly TXT?: RecordSet<string | readonly string[]>;
  readonly CNAME?: string | { readonly ttl: number; readonly target: string };
  /** Host names, at a reverse name such as "2.0.0.127.in-addr.arpa" (see `reverseName`). */
  readonly PTR?: RecordSet<string>;
  /** [usage, selector, matching type, data in hex] (RFC 6698 §2). */
  readonly TLSA?: RecordSet<readonly [number, number, number, string]>;
  /**
   * Answer as a validating resolver would for a signed name: the AD bit is set (for queries with
   * DO) when every name of the answer — each link of a CNAME chain — is `secure`. Only for tests
   * of how AD is read; DNSSEC itself is tested against a real validating unbound.
   */
  readonly secure?: boolean;
  /** Makes this name a zone apex: negative answers below it carry this SOA (TTL and MINIMUM default 300). */
  readonly SOA?: { readonly ttl?: number; readonly minimum?: number };
}

/** Names are case-insensitive, with or without the trailing dot. Unknown names are NXDOMAIN. */
export type Zone = Readonly<Record<string, ZoneEntry>>;

/**
 * servfail / refused: that rcode. drop: no answer at all. truncate: TC=1 and no records over
 * UDP (TCP answers). cname-only: return only the first CNAME of a chain, not following it.
 * no-edns: FORMERR to queries that carry an EDNS0 OPT record (an old server).
 */
export type Behaviour = "servfail" | "drop" | "refused" | "truncate" | "cname-only" | "no-edns";

export interface LoggedQuery {
  readonly name: string;
  readonly type: RecordType;
  readonly transport: "udp" | "tcp";
  readonly id: number;
  /** Where the query came from. */
  readonly address: string;
  readonly port: number;
  readonly edns: boolean;
  readonly packet: DecodedPacket;
}

export interface DnsServerOptions {
  /** Loopback address to listen on (default 127.0.0.1; "::1" for IPv6). */
  readonly address?: string;
  /** Port (default: a free one). 53 is what a resolv.conf nameserver line means (root only). */
  readonly port?: number;
  /** Add an SOA (TTL and MINIMUM 300) to negative answers for names under no SOA entry (default true). */
  readonly defaultSoa?: boolean;
}

export interface TestDnsServer {
  readonly address: string;
  readonly port: number;
  /** "127.0.0.1:PORT" or "[::1]:PORT", as `createResolver({ servers })` takes it. */
  readonly server: string;
  readonly queries: LoggedQuery[];
  setZone(zone: Zone): void;
  /** `name` (or "*" for every name); undefined puts the name back to normal. */
  setBehaviour(name: string, behaviour: Behaviour | undefined): void;
  /** The first logged query (already received or still to come) that matches. */
  waitForQuery(match?: (q: LoggedQuery) => boolean): Promise<LoggedQuery>;
  /** Send raw bytes from the server's own UDP socket (for forged or late answers). */
  sendUdp(message: Buffer, port: number, address: string): Promise<void>;
  /** The answer the zone gives to `query`, ignoring behaviours. */
  answer(query: DecodedPacket): Packet;
  close(): Promise<void>;
}

const DEFAULT_TTL = 300;
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

function key(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") && lower !== "." ? lower.slice(0, -1) : lower;
}

function recordsOf<T>(set: RecordSet<T> | undefined): { ttl: number; records: readonly T[] } {
  if (set === undefined) return { ttl: DEFAULT_TTL, records: [] };
  return "records" in set ? set : { ttl: DEFAULT_TTL, records: set as readonly T[] };
}

export async function startDnsServer(initialZone: Zone, options: DnsServerOptions = {}): Promise<TestDnsServer> {
  const address = options.address ?? "127.0.0.1";
  const family = net.isIP(address);
  if (family === 0) throw new Error(`not an IP address: ${address}`);
  let zone = new Map<string, ZoneEntry>();
  const setZone = (z: Zone) => {
    zone = new Map(Object.entries(z).map(([n, e]) => [key(n), e]));
  };
  setZone(initialZone);
  const behaviours = new Map<string, Behaviour>();
  const queries: LoggedQuery[] = [];
  const waiters: { match: (q: LoggedQuery) => boolean; resolve: (q: LoggedQuery) => void }[] = [];
  const tcpSockets = new Set<net.Socket>();

  const soaFor = (name: string): Answer | undefined => {
    const labels = name.split(".");
    for (let i = 0; i < labels.length; i++) {
      const apex = labels.slice(i).join(".");
      const soa = zone.get(apex)?.SOA;
      if (soa) return soaRecord(apex, soa.ttl ?? DEFAULT_TTL, soa.minimum ?? DEFAULT_TTL);
    }
    if (options.defaultSoa === false) return undefined;
    return soaRecord(labels[labels.length - 1], DEFAULT_TTL, DEFAULT_TTL);
  };

  const answer = (query: DecodedPacket): Packet => {
    const q = query.questions?.[0];
    const response: Packet = {
      type: "response",
      id: query.id,
      flags: (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: query.questions,
      answers: [],
      authorities: [],
      additionals: [],
    };
    if (!q) return response;
    const chase = lookupBehaviour(q.name) !== "cname-only";
    const answers: Answer[] = [];
    const seen = new Set<string>();
    let name = key(q.name);
    let secure = true;
    for (let links = 0; links <= 16; links++) {
      const entry = zone.get(name);
      secure &&= entry?.secure === true;
      if (entry === undefined) {
        response.flags = (response.flags ?? 0) | RCODE.NXDOMAIN;
        const soa = soaFor(name);
        if (soa) response.authorities = [soa];
        break;
      }
      if (entry.CNAME !== undefined && q.type === "CNAME") {
        const { ttl, target } = typeof entry.CNAME === "string" ? { ttl: DEFAULT_TTL, target: entry.CNAME } : entry.CNAME;
        answers.push({ type: "CNAME", name, ttl, class: "IN", data: key(target) });
        break;
      }
      if (entry.CNAME !== undefined) {
        const { ttl, target } = typeof entry.CNAME === "string" ? { ttl: DEFAULT_TTL, target: entry.CNAME } : entry.CNAME;
        answers.push({ type: "CNAME", name, ttl, class: "IN", data: key(target) });
        seen.add(name);
        name = key(target);
        if (!chase || seen.has(name)) break;
        continue;
      }
      const found = recordsFor(name, entry, q.type);
      if (found.length === 0) {
        const soa = soaFor(name);
        if (soa) response.authorities = [soa];
      }
      answers.push(...found);
      break;
    }
    response.answers = answers;
    const opt = query.additionals?.find((a) => a.type === "OPT");
    if (secure && opt?.type === "OPT" && opt.flag_do) response.flags = (response.flags ?? 0) | dnsPacket.AUTHENTIC_DATA;
    return response;
  };

  const lookupBehaviour = (name: string): Behaviour | undefined => behaviours.get(key(name)) ?? behaviours.get("*");

  /** The bytes to send back for `message`, or undefined for no answer. */
  const handle = (message: Buffer, transport: "udp" | "tcp", from: { address: string; port: number }): Buffer | undefined => {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return undefined;
    }
    if (query.type !== "query") return undefined;
    const q = query.questions?.[0];
    const opt = query.additionals?.find((a) => a.type === "OPT");
    const logged: LoggedQuery = {
      name: q ? key(q.name) : "",
      type: q?.type ?? "A",
      transport,
      id: query.id ?? 0,
      address: from.address,
      port: from.port,
      edns: opt !== undefined,
      packet: query,
    };
    queries.push(logged);
    for (let i = 0; i < waiters.length; i++) {
      if (waiters[i].match(logged)) {
        waiters[i].resolve(logged);
        waiters.splice(i--, 1);
      }
    }
    const behaviour = q ? lookupBehaviour(q.name) : undefined;
    if (behaviour === "drop") return undefined;
    const failure =
      behaviour === "servfail" ? RCODE.SERVFAIL
      : behaviour === "refused" ? RCODE.REFUSED
      : behaviour === "no-edns" && opt !== undefined ? RCODE.FORMERR
      : undefined;
    if (failure !== undefined) {
      return dnsPacket.encode({
        type: "response",
        id: query.id,
        flags: ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | failure,
        questions: query.questions,
        answers: [],
      });
    }
    const response = answer(query);
    if (opt !== undefined) {
      response.additionals = [
        ...(response.additionals ?? []),
        { type: "OPT", name: ".", udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] },
      ];
    }
    let bytes = dnsPacket.encode(response);
    const limit = opt !== undefined && opt.type === "OPT" ? Math.max(512, opt.udpPayloadSize) : 512;
    if (transport === "udp" && (behaviour === "truncate" || bytes.length > limit)) {
      bytes = dnsPacket.encode({ ...response, flags: (response.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [] });
    }
    return bytes;
  };

  const { udp, tcp, port } = await bindBoth(address, family === 6 ? "udp6" : "udp4", options.port);
  udp.on("error", () => {});
  udp.on("message", (msg, rinfo) => {
    const reply = handle(msg, "udp", rinfo);
    if (reply) udp.send(reply, rinfo.port, rinfo.address);
  });
  tcp.on("connection", (socket) => {
    tcpSockets.add(socket);
    socket.on("close", () => tcpSockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let buffered = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const length = buffered.readUInt16BE(0);
        const msg = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        const reply = handle(msg, "tcp", { address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 });
        if (reply) {
          const prefix = Buffer.alloc(2);
          prefix.writeUInt16BE(reply.length);
          socket.write(Buffer.concat([prefix, reply]));
        }
      }
    });
  });

  return {
    address,
    port,
    server: family === 6 ? `[${address}]:${port}` : `${address}:${port}`,
    queries,
    setZone,
    setBehaviour(name, behaviour) {
      const k = name === "*" ? "*" : key(name);
      if (behaviour === undefined) behaviours.delete(k);
      else behaviours.set(k, behaviour);
    },
    waitForQuery(match = () => true) {
      const found = queries.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
    sendUdp(message, toPort, toAddress) {
      return new Promise((resolve, reject) => udp.send(message, toPort, toAddress, (err) => (err ? reject(err) : resolve())));
    },
    answer,
    async close() {
      for (const s of tcpSockets) s.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}

function recordsFor(name: string, entry: ZoneEntry, type: RecordType): Answer[] {
  switch (type) {
    case "MX": {
      const { ttl, records } = recordsOf(entry.MX);
      return records.map(([preference, exchange]) => ({ type: "MX", name, ttl, class: "IN", data: { preference, exchange } }));
    }
    case "A":
    case "AAAA":
    case "PTR": {
      const { ttl, records } = recordsOf(entry[type]);
      return records.map((data) => ({ type, name, ttl, class: "IN", data }));
    }
    case "TXT": {
      const { ttl, records } = recordsOf(entry.TXT);
      return records.map((data) => ({ type: "TXT", name, ttl, class: "IN", data: typeof data === "string" ? [data] : [...data] }));
    }
    case "TLSA": {
      const { ttl, records } = recordsOf(entry.TLSA);
      return records.map(([usage, selector, matchingType, hex]) => ({ type: "TLSA", name, ttl, class: "IN", data: { usage, selector, matchingType, certificate: Buffer.from(hex, "hex") } }));
    }
    case "SOA":
      return entry.SOA ? [soaRecord(name, entry.SOA.ttl ?? DEFAULT_TTL, entry.SOA.minimum ?? DEFAULT_TTL)] : [];
    default:
      return [];
  }
}

function soaRecord(apex: string, ttl: number, minimum: number): Answer {
  return {
    type: "SOA",
    name: apex,
    ttl,
    class: "IN",
    data: { mname: `ns.${apex}`, rname: `hostmaster.${apex}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  };
}

/**
 * A DNS server that a resolv.conf file can name: `nameserver` lines have no
 * port, so it listens on port 53, of a random 127.53.x.y address (tests run
 * in parallel). Binding port 53 needs root, as CI runs the tests.
 */
export async function startResolvConfDnsServer(zone: Zone): Promise<TestDnsServer> {
  requireRoot("binding a DNS server to port 53 (a resolv.conf nameserver line has no port)");
  let lastError: unknown;
  for (let attempt = 0; attempt < 20; attempt++) {
    const address = `127.53.${1 + Math.floor(Math.random() * 254)}.${1 + Math.floor(Math.random() * 254)}`;
    try {
      return await startDnsServer(zone, { address, port: 53 });
    } catch (err) {
      lastError = err;
    }
  }
  throw new Error(`no free port 53 on 127.53.0.0/16: ${String(lastError)}`);
}

/** UDP on a free port, then TCP on the same port number; again if TCP finds it taken. */
async function bindBoth(address: string, type: "udp4" | "udp6", fixedPort = 0): Promise<{ udp: dgram.Socket; tcp: net.Server; port: number }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < (fixedPort === 0 ? 20 : 1); attempt++) {
    const udp = dgram.createSocket(type);
    await new Promise<void>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind(fixedPort, address, () => {
        udp.off("error", reject);
        resolve();
      });
    });
    const port = udp.address().port;
    const tcp = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen({ port, host: address, exclusive: true }, () => {
          tcp.off("error", reject);
          resolve();
        });
      });
      return { udp, tcp, port };
    } catch (err) {
      lastError = err;
      await new Promise<void>((resolve) => udp.close(() => resolve()));
    }
  }
  throw new Error(`could not bind UDP and TCP on one port at ${address}: ${String(lastError)}`);
}
