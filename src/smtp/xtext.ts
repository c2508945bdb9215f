/**
 * xtext (RFC 3461 §4): the encoding used by the DSN parameters ENVID and
 * ORCPT and by the AUTH= parameter of MAIL (RFC 4954 §5).
 *
 *   xtext   = *( xchar / hexchar )
 *   xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
 *             except for "+" and "=".
 *   hexchar = ASCII "+" immediately followed by two upper case
 *             hexadecimal digits
 *
 * Also the RFC 6533 §3 form used with the "utf-8" address type of ORCPT,
 * where non-ASCII characters may appear raw or as "\x{HEX}".
 *
 * Pure: no I/O.
 */

const PLUS = 0x2b;
const EQUALS = 0x3d;
const BACKSLASH = 0x5c;

// ignoreBOM: a leading U+FEFF is content, not a byte-order mark to strip ("+EF+BB+BFx" is "\u{FEFF}x").
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

function hexValue(s: string, at: number): number {
  const pair = s.slice(at, at + 2);
  return /^[0-9A-Fa-f]{2}$/.test(pair) ? parseInt(pair, 16) : -1;
}

/**
 * Decode xtext. Returns null when the text is not xtext: a "+" not followed
 * by two hex digits, a character outside "!".."~", a raw "=", or "+XX"
 * octets that do not form valid UTF-8.
 *
 * Tolerance: lower-case hex digits ("+2b") are accepted although RFC 3461
 * asks senders for upper case. Octets above 0x7F are decoded as UTF-8.
 */
export function decodeXtext(s: string): string | null {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === PLUS) {
      const v = hexValue(s, i + 1);
      if (v < 0) return null;
      bytes.push(v);
      i += 2;
    } else if (c < 33 || c > 126 || c === EQUALS) {
      return null;
    } else {
      bytes.push(c);
    }
  }
  try {
    return utf8Decoder.decode(new Uint8Array(bytes));
  } catch {
    return null;
  }
}

/**
 * Encode as xtext: "!".."~" except "+" and "=" stay literal, every other
 * octet (of the UTF-8 encoding) becomes "+XX" with upper-case hex.
 */
export function encodeXtext(s: string): string {
  let out = "";
  for (const b of utf8Encoder.encode(s)) {
    if (b >= 33 && b <= 126 && b !== PLUS && b !== EQUALS) {
      out += String.fromCharCode(b);
    } else {
      out += "+" + b.toString(16).toUpperCase().padStart(2, "0");
    }
  }
  return out;
}

/**
 * Decode the value part of ORCPT=utf-8;... (RFC 6533 §3,
 * utf-8-addr-xtext / utf-8-addr-unitext): printable ASCII except "+", "="
 * and "\" literal, non-ASCII characters raw, any character as "\x{HEX}"
 * (1 to 6 hex digits, a Unicode scalar value). Tolerance: RFC 3461 "+XX"
 * hexchars are also decoded, since some clients apply plain xtext here.
 * Returns null on malformed input.
 */
export function decodeUtf8AddrXtext(s: string): string | null {
  let out = "";
  const pending: number[] = []; // "+XX" octets awaiting UTF-8 decoding
  const flush = (): boolean => {
    if (pending.length === 0) return true;
    try {
      out += utf8Decoder.decode(new Uint8Array(pending));
    } catch {
      return false;
    }
    pending.length = 0;
    return true;
  };
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === PLUS) {
      const v = hexValue(s, i + 1);
      if (v < 0) return null;
      pending.push(v);
      i += 2;
      continue;
    }
    if (!flush()) return null;
    if (c === BACKSLASH) {
      const m = /^\\x\{([0-9A-Fa-f]{1,6})\}/.exec(s.slice(i));
      if (!m) return null;
      const cp = parseInt(m[1], 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return null;
      out += String.fromCodePoint(cp);
      i += m[0].length - 1;
    } else if (c >= 33 && c <= 126 && c !== EQUALS) {
      out += s[i];
    } else if (c >= 0x80) {
      const cp = s.codePointAt(i) as number;
      if (cp >= 0xd800 && cp <= 0xdfff) return null; // lone surrogate
      if (cp <= 0x9f) return null; // C1 control
      const ch = String.fromCodePoint(cp);
      out += ch;
      i += ch.length - 1;
    } else {
      return null;
    }
  }
  if (!flush()) return null;
  return out;
}
