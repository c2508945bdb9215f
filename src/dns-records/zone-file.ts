/**
 * Records in zone-file form (RFC 1035 §5.1), ready to paste: a TXT value longer than 255 octets
 * is written as several character-strings (RFC 1035 §3.3.14) inside parentheses, which a
 * resolver hands back joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
 */
import type { PublishedRecord } from "./records.ts";

export const MAX_CHARACTER_STRING = 255;

/** `value` cut into character-strings of at most 255 octets (DKIM and SPF values are ASCII). */
export function characterStrings(value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < value.length; i += MAX_CHARACTER_STRING) out.push(value.slice(i, i + MAX_CHARACTER_STRING));
  return out.length > 0 ? out : [""];
}

function quoted(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** One record: "name. IN TXT "…"", several lines for a long TXT value. */
export function zoneEntry(record: PublishedRecord, nameWidth = 0): string {
  const owner = `${record.name}.`.padEnd(nameWidth);
  if (record.type === "MX") return `${owner} IN MX  ${record.value}`;
  if (record.type === "CNAME") return `${owner} IN CNAME ${record.value}`;
  const strings = characterStrings(record.value).map(quoted);
  if (strings.length === 1) return `${owner} IN TXT ${strings[0]}`;
  const indent = " ".repeat(owner.length + 9);
  return `${owner} IN TXT ( ${strings.join(`\n${indent}`)} )`;
}

/** The records with their reasons as comments, names aligned. */
export function zoneText(records: readonly PublishedRecord[]): string {
  const width = Math.max(...records.map((r) => r.name.length + 1));
  return records.map((r) => `; ${r.kind}: ${r.why}\n${zoneEntry(r, width)}\n`).join("");
}
