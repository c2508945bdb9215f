/**
 * Domain names and server addresses as the resolver handles them.
 *
 * A name is compared case-insensitively and written without its trailing dot; a U-label name
 * (bücher.example) is converted to A-labels (xn--bcher-kva.example) before it goes on the wire.
 */
import { isIP } from "node:net";
import { domainToASCII } from "node:url";

/** The form every name takes inside the resolver: lower case, A-labels, no trailing dot. */
export type NormalizedName = string;

export type NameCheck = { ok: true; name: NormalizedName } | { ok: false; reason: string };

/**
 * Normalise a host or domain name for a query. ASCII names are only lower-cased (WHATWG host
 * parsing would reinterpret names like "mail.123"); names with non-ASCII characters go through
 * `domainToASCII` (UTS #46). Label and name lengths are checked against RFC 1035 §2.3.4.
 */
export function normalizeName(input: string): NameCheck {
  let name = input.trim();
  if (name.endsWith(".") && name !== ".") name = name.slice(0, -1);
  if (name === "" || name === ".") return { ok: false, reason: `invalid domain name "${input}"` };
  if (/[^\x21-\x7e]/.test(name)) {
    const ascii = domainToASCII(name);
    if (ascii === "") return { ok: false, reason: `invalid internationalized domain name "${input}"` };
    name = ascii.endsWith(".") ? ascii.slice(0, -1) : ascii;
  }
  name = name.toLowerCase();
  if (name.length > 253) return { ok: false, reason: `domain name too long "${input}"` };
  for (const label of name.split(".")) {
    if (label.length === 0 || label.length > 63) return { ok: false, reason: `invalid domain name "${input}"` };
  }
  return { ok: true, name };
}

/** Names as they come out of a DNS packet: lower case, no trailing dot ("." stays "."). */
export function wireName(name: string): string {
  const lower = name.toLowerCase();
  return lower.length > 1 && lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

export interface ServerAddress {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Parse "address", "address:port", "v6address" or "[v6address]:port" (port 53 when absent). */
export function parseServerAddress(text: string): ServerAddress {
  const s = text.trim();
  let address = s;
  let port = 53;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracketed) {
    address = bracketed[1];
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else if (isIP(s) === 0) {
    const i = s.lastIndexOf(":");
    if (i > 0 && s.indexOf(":") === i) {
      address = s.slice(0, i);
      port = Number(s.slice(i + 1));
    }
  }
  const family = isIP(address);
  if (family === 0) throw new Error(`DNS server "${text}" is not an IP address with an optional port`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`DNS server "${text}" has an invalid port`);
  return { address, port, family: family as 4 | 6 };
}

export function formatServerAddress(server: ServerAddress): string {
  return server.family === 6 ? `[${server.address}]:${server.port}` : `${server.address}:${server.port}`;
}

/** The name PTR records for `address` live at (RFC 1035 §3.5, RFC 3596 §2.5): "2.0.0.127.in-addr.arpa", nibbles under "ip6.arpa". */
export function reverseName(address: string): string {
  if (isIP(address) === 4) return `${address.split(".").reverse().join(".")}.in-addr.arpa`;
  const [head, tail] = address.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return `${groups.map((g) => g.padStart(4, "0")).join("").split("").reverse().join(".")}.ip6.arpa`;
}
