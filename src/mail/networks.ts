import { BlockList, isIP } from "node:net";

/**
 * Client addresses and the networks they belong to: lists of addresses and
 * CIDR ranges ("127.0.0.0/8", "2001:db8::/32") that a client is exempt from
 * or trusted by, and the network a client is counted in (an IPv6 host
 * usually owns a whole /64, RFC 7421, so counting single IPv6 addresses
 * counts nothing).
 */

/** "::ffff:192.0.2.1" → "192.0.2.1": an IPv4 client on a dual-stack socket is an IPv4 client (RFC 4291 §2.5.5.2). */
export function unmapIpv4(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  return mapped ? mapped[1] : ip;
}

/**
 * The eight 16-bit groups of an IPv6 address, "::" expanded and a dotted
 * IPv4 tail ("::ffff:192.0.2.1", "64:ff9b::192.0.2.1") turned into two
 * groups. Undefined for anything that is not an IPv6 address.
 */
export function ipv6Groups(ip: string): number[] | undefined {
  if (isIP(ip) !== 6 || ip.includes("%")) return undefined;
  let text = ip.toLowerCase();
  const tail = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (tail) {
    const [a, b, c, d] = tail.slice(1).map(Number);
    text = `${text.slice(0, tail.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = rest !== undefined && rest !== "" ? rest.split(":") : [];
  const zeros = rest === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(zeros).fill("0"), ...right].map((g) => parseInt(g, 16));
}

/** The full form of an IPv6 address, "0000:0000:…:0001" (a form every reader parses the same way). */
export function expandIpv6(ip: string): string | undefined {
  return ipv6Groups(ip)?.map((g) => g.toString(16).padStart(4, "0")).join(":");
}

/**
 * The network a client is counted in: an IPv4 address is itself; an IPv6
 * address is its first `ipv6Prefix` bits, written "2001:db8:1:2::/64" (the
 * whole address when the prefix is 128).
 */
export function clientNetwork(ip: string, ipv6Prefix: number): string {
  const v4 = unmapIpv4(ip);
  if (isIP(v4) === 4) return v4;
  const groups = ipv6Groups(v4);
  if (!groups) return ip;
  if (ipv6Prefix >= 128) return groups.map((g) => g.toString(16)).join(":");
  const kept = groups.map((g, i) => {
    const bits = Math.max(0, Math.min(16, ipv6Prefix - 16 * i));
    return bits === 0 ? 0 : g & (0xffff << (16 - bits)) & 0xffff;
  });
  const used = Math.ceil(ipv6Prefix / 16);
  return `${kept.slice(0, used).map((g) => g.toString(16)).join(":")}::/${ipv6Prefix}`;
}

/** "203.0.113.7", "10.0.0.0/8", "2001:db8::/32" — as the configuration schema accepts them. */
export function isNetwork(entry: string): boolean {
  const slash = entry.indexOf("/");
  const ip = slash === -1 ? entry : entry.slice(0, slash);
  const family = isIP(ip);
  if (family === 0 || ip.includes("%")) return false;
  if (slash === -1) return true;
  const bits = entry.slice(slash + 1);
  if (!/^(?:0|[1-9]\d{0,2})$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/**
 * A test for "is this client in one of these networks". IPv4-mapped IPv6
 * clients match IPv4 entries. Throws a TypeError naming an invalid entry
 * (the configuration schema refuses them first).
 */
export function networkMatcher(entries: readonly string[]): (ip: string) => boolean {
  if (entries.length === 0) return () => false;
  const list = new BlockList();
  for (const entry of entries) {
    if (!isNetwork(entry)) throw new TypeError(`not an IP address or CIDR range: ${JSON.stringify(entry)}`);
    const slash = entry.indexOf("/");
    const address = slash === -1 ? entry : entry.slice(0, slash);
    const type = isIP(address) === 4 ? "ipv4" : "ipv6";
    if (slash === -1) list.addAddress(address, type);
    else list.addSubnet(address, Number(entry.slice(slash + 1)), type);
  }
  return (ip: string): boolean => {
    const address = unmapIpv4(ip);
    const family = isIP(address);
    if (family === 0 || address.includes("%")) return false;
    return list.check(address, family === 4 ? "ipv4" : "ipv6");
  };
}

/** Loopback, the default of every "exempt" list: this host's own clients (Postfix's $mynetworks with mynetworks_style = host, roughly). */
export const LOOPBACK_NETWORKS: readonly string[] = ["127.0.0.0/8", "::1"];
