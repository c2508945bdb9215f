/**
 * One question to one DNS server over the wire: UDP first, TCP when the answer is truncated
 * (RFC 1035 §4.2, RFC 7766). Every query has a fresh random id and a fresh socket (so a random
 * source port); a datagram that does not come from the server's address and port, or does not
 * echo the id and the question, is ignored and the wait goes on (RFC 5452).
 */
import { randomInt } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import dnsPacket from "dns-packet";
import type { DecodedPacket, RecordType } from "dns-packet";
import { wireName, type NormalizedName, type ServerAddress } from "./names.ts";

export interface DnsQuestion {
  readonly name: NormalizedName;
  readonly type: RecordType;
}

/** The EDNS0 UDP payload size advertised (the DNS flag day 2020 value). */
export const EDNS_UDP_PAYLOAD = 1232;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export type ExchangeOutcome =
  | { kind: "response"; packet: DecodedPacket; rcode: number; transport: "udp" | "tcp" }
  | { kind: "timeout"; transport: "udp" | "tcp" }
  | { kind: "error"; message: string };

export interface ExchangeOptions {
  readonly timeoutMs: number;
  /** Send an EDNS0 OPT record (turned off to retry a server that answered FORMERR). */
  readonly edns: boolean;
  /** Set the DO bit in the OPT record (RFC 3225), so a validating resolver reports validation with AD (RFC 6840 §5.7). */
  readonly dnssecOk?: boolean;
  readonly signal?: AbortSignal;
  /** Told about every datagram or message dropped as not being the answer. */
  readonly onIgnored?: (why: string) => void;
  readonly onTcpFallback?: () => void;
}

export function encodeQuery(id: number, question: DnsQuestion, edns: boolean, dnssecOk = false): Buffer {
  return dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: question.type, name: question.name, class: "IN" }],
    additionals: edns
      ? [{ type: "OPT", name: ".", udpPayloadSize: EDNS_UDP_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: dnssecOk ? dnsPacket.DNSSEC_OK : 0, flag_do: dnssecOk, options: [] }]
      : [],
  });
}

/** Why a decoded packet is not the answer to our query, or undefined when it is. */
export function mismatch(packet: DecodedPacket, id: number, question: DnsQuestion): string | undefined {
  if (packet.id !== id) return "wrong id";
  if (!packet.flag_qr) return "not a response";
  const q = packet.questions ?? [];
  if (q.length !== 1) return "question not echoed";
  if (wireName(q[0].name) !== question.name || q[0].type !== question.type || (q[0].class ?? "IN") !== "IN") {
    return "different question";
  }
  return undefined;
}

/** The response code, with the upper bits an EDNS0 OPT record may carry (RFC 6891 §6.1.3). */
export function rcodeOf(packet: DecodedPacket): number {
  const opt = packet.additionals?.find((a) => a.type === "OPT");
  const upper = opt?.type === "OPT" ? (opt.extendedRcode ?? 0) : 0;
  return (upper << 4) | ((packet.flags ?? 0) & 0xf);
}

/** Ask `server` one question: UDP, then TCP if the UDP answer has TC=1. */
export async function exchange(server: ServerAddress, question: DnsQuestion, options: ExchangeOptions): Promise<ExchangeOutcome> {
  const id = randomInt(0, 65536);
  const query = encodeQuery(id, question, options.edns, options.dnssecOk);
  const udp = await udpExchange(server, query, id, question, options);
  if (udp.kind !== "truncated") return udp;
  options.onTcpFallback?.();
  return tcpExchange(server, query, id, question, options);
}

type UdpOutcome = ExchangeOutcome | { kind: "truncated" };

function udpExchange(
  server: ServerAddress,
  query: Buffer,
  id: number,
  question: DnsQuestion,
  options: ExchangeOptions,
): Promise<UdpOutcome> {
  return new Promise((resolve) => {
    if (options.signal?.aborted) return resolve({ kind: "error", message: "resolver closed" });
    const socket = dgram.createSocket(server.family === 6 ? "udp6" : "udp4");
    let done = false;
    const finish = (outcome: UdpOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      socket.close();
      resolve(outcome);
    };
    const onAbort = () => finish({ kind: "error", message: "resolver closed" });
    const timer = setTimeout(() => finish({ kind: "timeout", transport: "udp" }), options.timeoutMs);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    socket.on("error", (err) => finish({ kind: "error", message: err.message }));
    socket.on("message", (msg, rinfo) => {
      if (rinfo.address !== server.address || rinfo.port !== server.port) {
        options.onIgnored?.("datagram from another address or port");
        return;
      }
      let packet: DecodedPacket;
      try {
        packet = dnsPacket.decode(msg);
      } catch {
        options.onIgnored?.("undecodable datagram");
        return;
      }
      const why = mismatch(packet, id, question);
      if (why !== undefined) {
        options.onIgnored?.(why);
        return;
      }
      if (packet.flag_tc) return finish({ kind: "truncated" });
      finish({ kind: "response", packet, rcode: rcodeOf(packet), transport: "udp" });
    });
    socket.send(query, server.port, server.address, (err) => {
      if (err) finish({ kind: "error", message: err.message });
    });
  });
}

function tcpExchange(
  server: ServerAddress,
  query: Buffer,
  id: number,
  question: DnsQuestion,
  options: ExchangeOptions,
): Promise<ExchangeOutcome> {
  return new Promise((resolve) => {
    if (options.signal?.aborted) return resolve({ kind: "error", message: "resolver closed" });
    let done = false;
    let buffered = Buffer.alloc(0);
    const socket = net.connect({ host: server.address, port: server.port });
    const finish = (outcome: ExchangeOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(outcome);
    };
    const onAbort = () => finish({ kind: "error", message: "resolver closed" });
    const timer = setTimeout(() => finish({ kind: "timeout", transport: "tcp" }), options.timeoutMs);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    socket.on("connect", () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(query.length);
      socket.write(Buffer.concat([length, query]));
    });
    socket.on("error", (err) => finish({ kind: "error", message: `TCP: ${err.message}` }));
    socket.on("close", () => finish({ kind: "error", message: "TCP: connection closed before an answer" }));
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) return;
        const msg = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        let packet: DecodedPacket;
        try {
          packet = dnsPacket.decode(msg);
        } catch {
          return finish({ kind: "error", message: "TCP: undecodable answer" });
        }
        const why = mismatch(packet, id, question);
        if (why !== undefined) {
          options.onIgnored?.(`TCP: ${why}`);
          continue;
        }
        return finish({ kind: "response", packet, rcode: rcodeOf(packet), transport: "tcp" });
      }
    });
  });
}
