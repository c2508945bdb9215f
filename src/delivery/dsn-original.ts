/**
 * Reading the spooled original for the third part of a DSN (RFC 6522 §3):
 * the whole message when it may and can be returned, else its header
 * section. Reads only as far as it needs: a headers-only read stops at the
 * blank line, and a full read stops once the size limit is passed (the
 * stream is destroyed; nothing past the limit is held in memory).
 */
import type { Readable } from "node:stream";
import { HARD_LIMIT } from "./dsn-fields.ts";

/** Header sections larger than this are cut (Postfix's header_size_limit is 100 KiB). */
export const MAX_HEADER_SECTION = 1024 * 1024;

export type ReturnedContent =
  | { readonly kind: "full"; readonly content: Buffer }
  | {
      readonly kind: "headers";
      readonly content: Buffer;
      /** Why only the headers: asked for (RET=HDRS or our policy), too big, or lines too long to carry. */
      readonly reason: "requested" | "too-large" | "long-lines";
    };

/**
 * Read the original. `want` is what the sender asked for; `maxFull` bounds a
 * full return. The content is given CRLF line ends throughout (a lone CR or
 * LF becomes CRLF) so the DSN as a whole keeps the CRLF promise.
 */
export async function readOriginal(stream: Readable, want: "full" | "headers", maxFull: number): Promise<ReturnedContent> {
  const chunks: Buffer[] = [];
  let total = 0;
  let headerEnd = -1; // index just past the header section's last CRLF (before the blank line)
  let tooLarge = false;
  let scanned = 0; // bytes of the prefix already searched for the blank line

  for await (const c of stream) {
    const chunk = typeof c === "string" ? Buffer.from(c, "utf8") : (c as Buffer);
    chunks.push(chunk);
    total += chunk.length;
    if (headerEnd < 0 && scanned < MAX_HEADER_SECTION) {
      const prefix = Buffer.concat(chunks, Math.min(total, MAX_HEADER_SECTION + 4));
      headerEnd = findHeaderEnd(prefix, Math.max(0, scanned - 3));
      scanned = prefix.length;
    }
    const headersKnown = headerEnd >= 0 || scanned >= MAX_HEADER_SECTION;
    if (want === "headers" && headersKnown) break;
    if (want === "full" && total > maxFull) {
      tooLarge = true;
      if (headersKnown) break;
    }
  }

  const all = Buffer.concat(chunks);
  if (want === "full" && !tooLarge) {
    const full = normalizeCrlf(all);
    if (!hasLongLine(full)) return { kind: "full", content: full };
    return { kind: "headers", content: headerSection(all, headerEnd), reason: "long-lines" };
  }
  return { kind: "headers", content: headerSection(all, headerEnd), reason: tooLarge ? "too-large" : "requested" };
}

/** The index just past the CRLF that ends the last header line, or -1. Also accepts bare-LF messages. */
function findHeaderEnd(buf: Buffer, from: number): number {
  if (buf.length >= 2 && from === 0 && buf[0] === 0x0d && buf[1] === 0x0a) return 0; // no headers at all
  if (buf.length >= 1 && from === 0 && buf[0] === 0x0a) return 0;
  const crlf = buf.indexOf("\r\n\r\n", from);
  const lf = buf.indexOf("\n\n", from);
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 2;
  if (lf >= 0) return lf + 1;
  return -1;
}

/** The header section (without the blank line), capped, with CRLF ends and no over-long lines. */
function headerSection(all: Buffer, headerEnd: number): Buffer {
  let h = headerEnd >= 0 ? all.subarray(0, headerEnd) : all.subarray(0, MAX_HEADER_SECTION);
  if (headerEnd < 0 && h.length >= MAX_HEADER_SECTION) {
    // Cut at the last line end so no half line is returned.
    const nl = h.lastIndexOf(0x0a);
    if (nl >= 0) h = h.subarray(0, nl + 1);
  }
  let out = foldLongLines(normalizeCrlf(h));
  if (out.length > 0 && !(out[out.length - 2] === 0x0d && out[out.length - 1] === 0x0a)) {
    out = Buffer.concat([out, Buffer.from("\r\n")]);
  }
  return out;
}

/** Lone CR and lone LF become CRLF. Returns the input itself when it is already clean. */
export function normalizeCrlf(buf: Buffer): Buffer {
  let clean = true;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b === 0x0d) {
      if (buf[i + 1] !== 0x0a) { clean = false; break; }
      i++;
    } else if (b === 0x0a) { clean = false; break; }
  }
  if (clean) return buf;
  const parts: Buffer[] = [];
  const CRLF = Buffer.from("\r\n");
  let from = 0;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b === 0x0d && buf[i + 1] === 0x0a) { i++; continue; }
    if (b === 0x0d || b === 0x0a) {
      parts.push(buf.subarray(from, i), CRLF);
      from = i + 1;
    }
  }
  parts.push(buf.subarray(from));
  return Buffer.concat(parts);
}

/** True when some line (CRLF excluded) is longer than 998 octets. Input has CRLF ends. */
export function hasLongLine(buf: Buffer): boolean {
  let start = 0;
  while (start < buf.length) {
    const lf = buf.indexOf(0x0a, start);
    const end = lf < 0 ? buf.length : lf - 1; // lf-1 is the CR
    if (end - start > HARD_LIMIT) return true;
    if (lf < 0) break;
    start = lf + 1;
  }
  return false;
}

/**
 * Header lines over 998 octets get a fold (CRLF SP) inserted, not between
 * the bytes of one UTF-8 character. Only a header section is ever folded;
 * a body with such lines is not returned at all.
 */
function foldLongLines(buf: Buffer): Buffer {
  if (!hasLongLine(buf)) return buf;
  const parts: Buffer[] = [];
  let start = 0;
  while (start < buf.length) {
    const lf = buf.indexOf(0x0a, start);
    const lineEnd = lf < 0 ? buf.length : lf - 1;
    let pos = start;
    let width = HARD_LIMIT;
    while (lineEnd - pos > width) {
      let cut = pos + width;
      while (cut > pos + 1 && (buf[cut] & 0xc0) === 0x80) cut--; // keep UTF-8 sequences whole
      parts.push(buf.subarray(pos, cut), Buffer.from("\r\n "));
      pos = cut;
      width = HARD_LIMIT - 1; // the continuation line starts with a space
    }
    parts.push(buf.subarray(pos, lf < 0 ? buf.length : lf + 1));
    if (lf < 0) break;
    start = lf + 1;
  }
  return Buffer.concat(parts);
}
