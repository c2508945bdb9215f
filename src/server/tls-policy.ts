/**
 * What Petrel's own TLS listeners offer, per role: cipher suites and the
 * OpenSSL options every server context carries.
 *
 * - Submission (587, 465) and Petrel's HTTPS listener speak to mail clients
 *   and modern fetchers: only AEAD suites with forward secrecy, Mozilla's
 *   "intermediate" profile (ECDHE suites; its DHE suites are left out because
 *   Petrel sets no Diffie-Hellman parameters, so OpenSSL would never pick them).
 * - MX (25) speaks to any other mail server; RFC 7435 §1: any encryption beats
 *   the plaintext that a refused handshake falls back to, so it stays broad
 *   (CBC and RSA key exchange remain for old peers).
 * - Never, on any role, whatever the configuration says: NULL encryption,
 *   anonymous key exchange, export suites, DES, 3DES, RC4, MD5 (RFC 7465 for
 *   RC4; the others are broken or offer no protection at all). These
 *   exclusions are appended to every configured list.
 *
 * TLS 1.3 suites (TLS_…) are written in the same string; they are all AEAD
 * with forward secrecy. A string without any leaves TLS 1.3 off.
 */
import { constants } from "node:crypto";
import * as tls from "node:tls";

/** The roles whose cipher policy is configured; the HTTPS listener uses `submissions`'. */
export type TlsRole = "mx" | "submission" | "submissions";

/** Appended to every configured TLS 1.2 cipher list. */
const NEVER = "!aNULL:!eNULL:!EXPORT:!LOW:!DES:!3DES:!RC4:!MD5";

/**
 * The cipher string a context is built with: the configured one, with the
 * suites Petrel never offers struck out. Only the TLS 1.2 part takes
 * exclusions (a list of nothing but exclusions would match no cipher).
 */
export function effectiveCiphers(configured: string): string {
  const parts = configured.split(":").filter((p) => p.length > 0);
  const tls12 = parts.filter((p) => !p.startsWith("TLS_"));
  return tls12.length === 0 ? parts.join(":") : [...parts, NEVER].join(":");
}

/**
 * OpenSSL options for every server context. SSL_OP_NO_RENEGOTIATION: a TLS 1.2
 * client may not renegotiate (each renegotiation costs the server a full
 * handshake, a DoS lever; Node's own limit still allows 3 per 10 minutes).
 * TLS 1.3 has no renegotiation.
 */
export const SERVER_SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION;

/** Why OpenSSL refuses a cipher string, or undefined when it builds a context. */
export function cipherStringProblem(ciphers: string): string | undefined {
  try {
    tls.createSecureContext({ ciphers: effectiveCiphers(ciphers) });
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
