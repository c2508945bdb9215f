/**
 * HAProxy PROXY protocol, versions 1 (text) and 2 (binary), receiver side — pure parsing.
 * Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 *
 * The listener calls `parseProxyHeader` on the bytes read so far from a connection whose peer is
 * trusted (`isTrusted`): "incomplete" → read more; "error" → close the connection; "ok" → the
 * first `consumed` bytes were the header, the rest is SMTP.
 */
import { networkMatcher } from "../mail/networks.ts";
import { isIP } from "node:net";

export interface ProxyEndpoint {
  address: string;
  port: number;
}

export type ProxyHeaderResult =
  | { status: "incomplete" }
  | { status: "error"; reason: string }
  | { status: "ok"; consumed: number; source?: ProxyEndpoint; destination?: ProxyEndpoint; command: "PROXY" | "LOCAL" };

/** v1 header maximum, CRLF included (spec §2.1). */
export const V1_MAX_LENGTH = 107;
/** Largest v2 address+TLV block we accept (the 16-bit length field allows 65535). */
export const V2_MAX_PAYLOAD = 2048;

const V1_PREFIX = Buffer.from("PROXY ", "ascii");
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function error(reason: string): ProxyHeaderResult {
  return { status: "error", reason };
}

const INCOMPLETE: ProxyHeaderResult = { status: "incomplete" };

/** Parse a PROXY protocol header (v1 or v2) at the start of `buf`. */
export function parseProxyHeader(buf: Buffer): ProxyHeaderResult {
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] === V1_PREFIX[0]) return parseV1(buf);
  if (buf[0] === V2_SIGNATURE[0]) return parseV2(buf);
  return error("not a PROXY protocol header");
}

// ---------------------------------------------------------------------------------------------
// v1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n"
// ---------------------------------------------------------------------------------------------

const PORT = /^(?:0|[1-9][0-9]{0,4})$/;

function parsePort(s: string): number | null {
  if (!PORT.test(s)) return null;
  const n = Number(s);
  return n <= 65535 ? n : null;
}

/** Characters that may appear in a v1 line before CRLF. */
function isV1Char(b: number): boolean {
  return b >= 0x20 && b <= 0x7e;
}

/** Can `partial` (a line without CRLF, maybe cut short) still become a valid v1 header? */
function v1PrefixError(partial: string): string | null {
  const fields = partial.split(" ");
  // fields[0] is "PROXY" (checked by the caller).
  const proto = fields[1];
  if (proto === undefined) return null;
  const complete = fields.length > 2;
  if (complete) {
    if (proto !== "TCP4" && proto !== "TCP6" && proto !== "UNKNOWN") return "v1: unknown protocol";
  } else if (!"TCP4".startsWith(proto) && !"TCP6".startsWith(proto) && !"UNKNOWN".startsWith(proto)) {
    return "v1: unknown protocol";
  }
  if (proto === "UNKNOWN") return null; // anything may follow up to CRLF
  if (fields.length > 6) return "v1: too many fields";
  // Every complete field must be non-empty (single spaces) and have the right character set.
  for (let i = 2; i < fields.length; i++) {
    const f = fields[i];
    const last = i === fields.length - 1;
    if (f === "" && !last) return "v1: empty field";
    const ok = i <= 3 ? (proto === "TCP4" ? /^[0-9.]*$/ : /^[0-9A-Fa-f:.]*$/).test(f) : /^[0-9]*$/.test(f);
    if (!ok) return "v1: bad character in field";
  }
  return null;
}

function parseV1(buf: Buffer): ProxyHeaderResult {
  const n = Math.min(buf.length, V1_PREFIX.length);
  if (!buf.subarray(0, n).equals(V1_PREFIX.subarray(0, n))) return error("not a PROXY protocol header");
  const limit = Math.min(buf.length, V1_MAX_LENGTH);
  let crlf = -1;
  for (let i = 0; i < limit; i++) {
    const b = buf[i];
    if (b === 0x0d) {
      if (i + 1 >= buf.length) break; // CR is the last byte so far: wait for LF
      if (buf[i + 1] !== 0x0a) return error("v1: CR not followed by LF");
      if (i + 1 >= V1_MAX_LENGTH) return error("v1: header longer than 107 bytes");
      crlf = i;
      break;
    }
    if (!isV1Char(b)) return error("v1: invalid byte in header");
  }
  if (crlf < 0) {
    if (buf.length >= V1_MAX_LENGTH) return error("v1: no CRLF within 107 bytes");
    const partial = buf.toString("latin1").replace(/\r$/, "");
    if (partial.length < V1_PREFIX.length) return INCOMPLETE;
    const why = v1PrefixError(partial);
    return why ? error(why) : INCOMPLETE;
  }
  const line = buf.toString("latin1", 0, crlf);
  const consumed = crlf + 2;
  const fields = line.split(" ");
  if (fields[0] !== "PROXY" || fields.length < 2) return error("v1: malformed header");
  const proto = fields[1];
  if (proto === "UNKNOWN") return { status: "ok", consumed, command: "PROXY" };
  if (proto !== "TCP4" && proto !== "TCP6") return error("v1: unknown protocol");
  if (fields.length !== 6) return error("v1: wrong number of fields");
  const [, , src, dst, sportText, dportText] = fields;
  const family = proto === "TCP4" ? 4 : 6;
  if (src.includes("%") || dst.includes("%") || isIP(src) !== family || isIP(dst) !== family) {
    return error(`v1: bad ${proto} address`);
  }
  const sport = parsePort(sportText);
  const dport = parsePort(dportText);
  if (sport === null || dport === null) return error("v1: bad port");
  return {
    status: "ok",
    consumed,
    command: "PROXY",
    source: { address: family === 6 ? formatIPv6(ipv6Bytes(src)!) : src, port: sport },
    destination: { address: family === 6 ? formatIPv6(ipv6Bytes(dst)!) : dst, port: dport },
  };
}

// ---------------------------------------------------------------------------------------------
// v2: 12-byte signature, ver/cmd, fam/proto, 16-bit length, addresses, TLVs
// ---------------------------------------------------------------------------------------------

function parseV2(buf: Buffer): ProxyHeaderResult {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  if (!buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return error("not a PROXY protocol header");
  if (buf.length < 13) return INCOMPLETE;
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) return error("v2: unsupported version");
  const cmd = verCmd & 0x0f;
  if (cmd !== 0 && cmd !== 1) return error("v2: unknown command");
  if (buf.length < 14) return INCOMPLETE;
  const famProto = buf[13];
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  if (family > 3 || transport > 2) return error("v2: unknown address family or transport");
  if (buf.length < 16) return INCOMPLETE;
  const len = buf.readUInt16BE(14);
  if (len > V2_MAX_PAYLOAD) return error("v2: header too long");
  const total = 16 + len;
  if (buf.length < total) return INCOMPLETE;
  const payload = buf.subarray(16, total);

  if (cmd === 0) {
    // LOCAL: health check / proxy's own connection; use the real endpoints. Payload ignored.
    return { status: "ok", consumed: total, command: "LOCAL" };
  }
  let addrLen: number;
  switch (family) {
    case 0: // AF_UNSPEC
      addrLen = 0;
      break;
    case 1: // AF_INET
      addrLen = 12;
      break;
    case 2: // AF_INET6
      addrLen = 36;
      break;
    default: // AF_UNIX
      addrLen = 216;
  }
  if (len < addrLen) return error("v2: address block too short for its family");
  const tlvError = checkTlvs(payload.subarray(addrLen));
  if (tlvError) return error(tlvError);
  if (family === 0 || family === 3) return { status: "ok", consumed: total, command: "PROXY" };
  if (transport !== 1) return error("v2: only STREAM transport is supported for INET/INET6");
  if (family === 1) {
    return {
      status: "ok",
      consumed: total,
      command: "PROXY",
      source: { address: formatIPv4(payload.subarray(0, 4)), port: payload.readUInt16BE(8) },
      destination: { address: formatIPv4(payload.subarray(4, 8)), port: payload.readUInt16BE(10) },
    };
  }
  return {
    status: "ok",
    consumed: total,
    command: "PROXY",
    source: { address: formatIPv6(payload.subarray(0, 16)), port: payload.readUInt16BE(32) },
    destination: { address: formatIPv6(payload.subarray(16, 32)), port: payload.readUInt16BE(34) },
  };
}

/** TLVs are skipped, but their framing must add up exactly. */
function checkTlvs(tlvs: Buffer): string | null {
  let i = 0;
  while (i < tlvs.length) {
    if (i + 3 > tlvs.length) return "v2: truncated TLV";
    const l = tlvs.readUInt16BE(i + 1);
    i += 3 + l;
    if (i > tlvs.length) return "v2: TLV overruns header";
  }
  return null;
}

function formatIPv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text form: lower case, longest run (≥2) of zero groups as "::", IPv4-mapped as ::ffff:a.b.c.d. */
export function formatIPv6(b: Uint8Array): string {
  const isMapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (isMapped) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** Parse an IPv6 literal (as accepted by net.isIP, without zone) into 16 bytes. */
function ipv6Bytes(s: string): Uint8Array | null {
  let text = s;
  const out = new Uint8Array(16);
  // Trailing dotted IPv4 → two hex groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Trusted proxies
// ---------------------------------------------------------------------------------------------

/** Is `ip` (the TCP peer) one of the trusted proxies? Invalid list entries throw (mail/networks.ts). */
export function isTrusted(ip: string, trusted: readonly string[]): boolean {
  return networkMatcher(trusted)(ip);
}
