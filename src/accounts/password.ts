/**
 * Password storage: scrypt hashes for PLAIN/LOGIN and SCRAM-SHA-256 verifiers for SCRAM, in the
 * formats the account store keeps. Pure functions over node:crypto; nothing here logs, and no
 * error message ever contains the password.
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { SCRAM_MAX_ITERATIONS, deriveScramVerifier, type ScramVerifier } from "../sasl/scram.ts";
import { decodeBase64Strict } from "../sasl/base64.ts";

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
// SCRAM-SHA-256 verifiers as stored (the derivation itself is in sasl/scram.ts)
// ---------------------------------------------------------------------------------------------

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
