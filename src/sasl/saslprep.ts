/**
 * SASLprep (RFC 4013), the string preparation SCRAM applies to user names and passwords
 * (RFC 5802 §2.2). Pure; the thrown error never contains the input.
 */

/** RFC 3454 C.1.2: non-ASCII space characters, mapped to U+0020. */
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/g;
/** RFC 3454 B.1: commonly mapped to nothing (U+200B is in both B.1 and C.1.2; we drop it). */
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;

/** Prohibited output (RFC 4013 §2.3: C.1.2 is mapped away above, C.2.1–C.9). */
function isProhibited(cp: number): boolean {
  return (
    cp <= 0x1f || cp === 0x7f || // C.2.1 ASCII controls
    (cp >= 0x80 && cp <= 0x9f) || // C.2.2 non-ASCII controls
    cp === 0x06dd || cp === 0x070f || cp === 0x180e || cp === 0x200c || cp === 0x200d ||
    cp === 0x2028 || cp === 0x2029 || (cp >= 0x2060 && cp <= 0x2063) ||
    (cp >= 0x206a && cp <= 0x206f) || cp === 0xfeff || (cp >= 0xfff9 && cp <= 0xfffc) ||
    (cp >= 0x1d173 && cp <= 0x1d17a) ||
    (cp >= 0xe000 && cp <= 0xf8ff) || // C.3 private use
    (cp >= 0xf0000 && cp <= 0xffffd) || (cp >= 0x100000 && cp <= 0x10fffd) ||
    (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe || // C.4 non-characters
    (cp >= 0xd800 && cp <= 0xdfff) || // C.5 surrogates (lone ones survive in JS strings)
    cp === 0xfffd || // C.6 (FFF9–FFFC covered above)
    (cp >= 0x2ff0 && cp <= 0x2ffb) || // C.7 ideographic description
    cp === 0x0340 || cp === 0x0341 || cp === 0x200e || cp === 0x200f || // C.8 display/bidi
    (cp >= 0x202a && cp <= 0x202e) ||
    cp === 0xe0001 || (cp >= 0xe0020 && cp <= 0xe007f) // C.9 tagging
  );
}

/**
 * SASLprep, a reasonable subset of RFC 4013:
 *  - maps non-ASCII spaces (C.1.2) to U+0020 and "commonly mapped to nothing" (B.1) to nothing;
 *  - normalizes with NFKC;
 *  - rejects prohibited code points (C.2.1–C.9, including lone surrogates) by throwing.
 * Left out: the bidirectional-text check of RFC 3454 §6 (RandALCat/LCat mixing), and the
 * unassigned-code-point check (A.1, Unicode 3.2) — strings are treated as "queries".
 * The thrown error never contains the input.
 */
export function saslPrep(input: string): string {
  const mapped = input.replace(MAPPED_TO_NOTHING, "").replace(NON_ASCII_SPACE, " ");
  const normalized = mapped.normalize("NFKC");
  for (let i = 0; i < normalized.length; i++) {
    const cp = normalized.codePointAt(i)!;
    if (cp > 0xffff) i++;
    else if (cp >= 0xd800 && cp <= 0xdfff) throw new Error("SASLprep: prohibited character");
    if (isProhibited(cp)) throw new Error("SASLprep: prohibited character");
  }
  return normalized;
}
