/**
 * What Petrel's own TLS listeners offer, per role.
 *
 * - Submission (587, 465) and Petrel's HTTPS listener speak to mail clients
 *   and modern fetchers: only AEAD suites with forward secrecy, Mozilla's
 *   "intermediate" profile (ECDHE suites; its DHE suites are left out because
 *   Petrel sets no Diffie-Hellman parameters, so OpenSSL would never pick them).
 * - MX (25) speaks to any other mail server; RFC 7435 §1: any encryption beats
 *   the plaintext that a refused handshake falls back to, so it stays broad
 *   (CBC and RSA key exchange remain for old peers).
 * - Never, on any role: what src/config/cipher-policy.ts strikes out.
 * The default strings are in src/config/defaults.ts (tls.ciphers).
 */
import { constants } from "node:crypto";

/** The roles whose cipher policy is configured; the HTTPS listener uses `submissions`'. */
export type TlsRole = "mx" | "submission" | "submissions";

/**
 * OpenSSL options for every server context. SSL_OP_NO_RENEGOTIATION: a TLS 1.2
 * client may not renegotiate (each renegotiation costs the server a full
 * handshake, a DoS lever; Node's own limit still allows 3 per 10 minutes).
 * TLS 1.3 has no renegotiation.
 */
export const SERVER_SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION;
