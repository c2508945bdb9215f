/**
 * Password storage: scrypt hashes for PLAIN/LOGIN, SCRAM-SHA-256 verifiers for SCRAM, and the
 * SASLprep (RFC 4013) subset both use. Pure functions over node:crypto; nothing here logs, and
 * no error message ever contains the password.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, scrypt, timingSafeEqual } from "node:crypto";

// ---------------------------------------------------------------------------------------------
// scrypt
// ---------------------------------------------------------------------------------------------

const SCRYPT_LN = 14; // N = 2^14 = 16384
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** Limits on parameters read back from a stored hash, so a bad record can't exhaust memory/CPU. */
const MAX_LN = 20;
const MAX_R = 32;
const MAX_P = 16;

function b64NoPad(b: Buffer): string {
  return b.toString("base64").replace(/=+$/, "");
}

const B64_NOPAD = /^[A-Za-z0-9+/]+$/;

function decodeB64NoPad(s: string): Buffer | null {
  if (!B64_NOPAD.test(s) || s.length % 4 === 1) return null;
  return Buffer.from(s, "base64");
}

function scryptAsync(plain: string, salt: Buffer, keylen: number, N: number, r: number, p: number): Promise<Buffer> {
  // scrypt needs about 128 * N * r * p bytes; give it that plus headroom.
  const maxmem = 128 * N * r * p + 32 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    scrypt(plain.normalize("NFKC"), salt, keylen, { N, r, p, maxmem }, (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

/**
 * Hash a password with scrypt (N=16384, r=8, p=1, 16-byte random salt, 32-byte key).
 * Format: `$scrypt$ln=14,r=8,p=1$<salt b64, no padding>$<hash b64, no padding>`.
 * The password is NFKC-normalized first so that the same text typed differently verifies.
 */
export async function hashPassword(plain: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(plain, salt, KEY_BYTES, 2 ** SCRYPT_LN, SCRYPT_R, SCRYPT_P);
  return `$scrypt$ln=${SCRYPT_LN},r=${SCRYPT_R},p=${SCRYPT_P}$${b64NoPad(salt)}$${b64NoPad(key)}`;
}

interface ParsedScryptHash {
  ln: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parseScryptHash(hash: string): ParsedScryptHash | null {
  if (typeof hash !== "string") return null;
  const parts = hash.split("$");
  // ["", "scrypt", "ln=14,r=8,p=1", salt, key]
  if (parts.length !== 5 || parts[0] !== "" || parts[1] !== "scrypt") return null;
  const m = /^ln=([1-9][0-9]?),r=([1-9][0-9]?),p=([1-9][0-9]?)$/.exec(parts[2]);
  if (!m) return null;
  const ln = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  if (ln > MAX_LN || r > MAX_R || p > MAX_P) return null;
  const salt = decodeB64NoPad(parts[3]);
  const key = decodeB64NoPad(parts[4]);
  if (!salt || !key || salt.length < 8 || key.length < 16 || key.length > 64) return null;
  return { ln, r, p, salt, key };
}

/**
 * Check a password against a hash from {@link hashPassword}. Resolves false (never throws) for a
 * wrong password or a malformed / unsupported hash.
 */
export async function verifyPassword(plain: string, hash: string): Promise<boolean> {
  const parsed = parseScryptHash(hash);
  if (!parsed || typeof plain !== "string") return false;
  let key: Buffer;
  try {
    key = await scryptAsync(plain, parsed.salt, parsed.key.length, 2 ** parsed.ln, parsed.r, parsed.p);
  } catch {
    return false;
  }
  return timingSafeEqual(key, parsed.key);
}

// ---------------------------------------------------------------------------------------------
// SASLprep (RFC 4013) — a subset
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// SCRAM-SHA-256 (RFC 5802 §3, RFC 7677)
// ---------------------------------------------------------------------------------------------

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export const SCRAM_MIN_ITERATIONS = 4096;
export const SCRAM_MAX_ITERATIONS = 10_000_000;

export function hmacSha256(key: Buffer, data: string | Buffer): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

export function sha256(data: Buffer): Buffer {
  return createHash("sha256").update(data).digest();
}

/** SaltedPassword = Hi(Normalize(password), salt, i) = PBKDF2-HMAC-SHA-256. Throws on a SASLprep failure. */
export function scramSaltedPassword(plain: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(Buffer.from(saslPrep(plain), "utf8"), salt, iterations, 32, "sha256");
}

/** Derive StoredKey and ServerKey for a password with the given salt and iteration count. */
export function deriveScramVerifier(plain: string, salt: Buffer, iterations: number): ScramVerifier {
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > SCRAM_MAX_ITERATIONS) {
    throw new RangeError("SCRAM iteration count out of range");
  }
  const salted = scramSaltedPassword(plain, salt, iterations);
  const clientKey = hmacSha256(salted, "Client Key");
  return {
    iterations,
    salt: Buffer.from(salt),
    storedKey: sha256(clientKey),
    serverKey: hmacSha256(salted, "Server Key"),
  };
}

/** Serialize a verifier: `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`. */
export function formatScramVerifier(v: ScramVerifier): string {
  return `SCRAM-SHA-256$${v.iterations}:${v.salt.toString("base64")}$${v.storedKey.toString("base64")}:${v.serverKey.toString("base64")}`;
}

/**
 * Make a SCRAM-SHA-256 verifier for storage with a fresh 16-byte salt:
 * `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>` (padded base64, the
 * same layout PostgreSQL uses). Throws if the password fails SASLprep.
 */
export function scramVerifier(plain: string, iterations = 10000): string {
  return formatScramVerifier(deriveScramVerifier(plain, randomBytes(SALT_BYTES), iterations));
}

const B64_PADDED = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict (padded, canonical-alphabet) base64 decode; null if not valid base64. */
export function decodeBase64Strict(s: string): Buffer | null {
  if (!B64_PADDED.test(s)) return null;
  return Buffer.from(s, "base64");
}

/** Parse a stored verifier; null if malformed. */
export function parseScramVerifier(s: string): ScramVerifier | null {
  if (typeof s !== "string") return null;
  const m = /^SCRAM-SHA-256\$([1-9][0-9]{0,7}):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(s);
  if (!m) return null;
  const iterations = Number(m[1]);
  if (iterations > SCRAM_MAX_ITERATIONS) return null;
  const salt = decodeBase64Strict(m[2]);
  const storedKey = decodeBase64Strict(m[3]);
  const serverKey = decodeBase64Strict(m[4]);
  if (!salt || salt.length === 0 || !storedKey || storedKey.length !== 32 || !serverKey || serverKey.length !== 32) {
    return null;
  }
  return { iterations, salt, storedKey, serverKey };
}
