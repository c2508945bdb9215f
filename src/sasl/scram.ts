/**
 * SCRAM-SHA-256 primitives (RFC 5802 §3, RFC 7677), shared by the server exchange, the client
 * and the account store that keeps verifiers: Hi() (PBKDF2-HMAC-SHA-256), HMAC, H, the
 * StoredKey/ServerKey derivation, and the saslname encoding both sides use.
 */
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { saslPrep } from "./saslprep.ts";

/** What a server keeps for a SCRAM user instead of the password (RFC 5802 §3). */
export interface ScramVerifier {
  readonly iterations: number;
  readonly salt: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/** The most iterations accepted, so that a hostile server-first or a bad record cannot cost hours. */
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

/** RFC 5802 §5.1 saslname: "," → "=2C", "=" → "=3D". */
export function escapeSaslName(name: string): string {
  return name.replace(/=/g, "=3D").replace(/,/g, "=2C");
}

/** Inverse of {@link escapeSaslName}; null if an "=" is not followed by "2C" or "3D". */
export function unescapeSaslName(s: string): string | null {
  if (/=(?!2C|3D)/.test(s)) return null;
  return s.replace(/=2C/g, ",").replace(/=3D/g, "=");
}
