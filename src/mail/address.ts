/**
 * Addresses and domains as every box compares them: one splitting of
 * "local@domain" (at the last "@", RFC 5321 §4.1.2: a quoted local part may
 * hold "@"), one canonical form of a mail domain (lower case, A-labels
 * (RFC 5890), no trailing dot; address literals only lower-cased), one strict
 * check for names a person configures. The grammar of paths on the wire is
 * smtp/address.ts; names as the resolver queries them are dns/names.ts.
 */
import { domainToASCII } from "node:url";

const DOMAIN_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Lower-cased ASCII (A-label) form of a domain name, or undefined if it is not one (letters, digits, hyphens). */
export function normalizeDomain(value: string): string | undefined {
  let d = value.trim().toLowerCase();
  if (d.endsWith(".")) d = d.slice(0, -1);
  if (!isAscii(d)) d = domainToASCII(d);
  if (d === "" || d.length > 253) return undefined;
  return d.split(".").every((l) => DOMAIN_LABEL.test(l)) ? d : undefined;
}

/** The canonical form of a domain for comparing: normalizeDomain's when it is a name, else lower-cased (address literals, oddities). */
export function canonicalDomain(domain: string): string {
  if (domain.startsWith("[")) return domain.toLowerCase();
  return normalizeDomain(domain) ?? domain.toLowerCase();
}

/** "Local@Example.ORG" → { local: "Local", domain: "example.org" }; domain "" when there is no "@". */
export function splitAddress(address: string): { local: string; domain: string } {
  const at = address.lastIndexOf("@");
  if (at < 0) return { local: address, domain: "" };
  return { local: address.slice(0, at), domain: canonicalDomain(address.slice(at + 1)) };
}

/** The canonical domain of an address ("" when there is none). */
export function domainOf(address: string): string {
  return splitAddress(address).domain;
}

const ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~\\-\\u0080-\\uffff]+";
const DOT_ATOM = new RegExp(`^${ATEXT}(?:\\.${ATEXT})*$`);

/** "Local@Example.COM" → "Local@example.com"; undefined unless a dot-atom local part @ a domain name (RFC 5321 §4.1.2, RFC 6531). */
export function normalizeMailbox(value: string): string | undefined {
  const at = value.lastIndexOf("@");
  if (at <= 0) return undefined;
  const local = value.slice(0, at);
  const domain = normalizeDomain(value.slice(at + 1));
  if (!DOT_ATOM.test(local) || local.length > 64 || domain === undefined) return undefined;
  return `${local}@${domain}`;
}

/** Only US-ASCII characters (RFC 6531: anything else needs SMTPUTF8). */
export function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}
