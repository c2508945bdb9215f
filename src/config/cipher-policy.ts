/**
 * Which cipher suites a configured list may yield (`tls.ciphers`): the
 * configured OpenSSL string, with the suites Petrel never offers struck out
 * whatever the configuration says — NULL encryption, anonymous key exchange,
 * export suites, DES, 3DES, RC4 (RFC 7465) and MD5: broken, or no protection
 * at all. Used by the schema to check a list and by the TLS contexts to
 * build it (src/server/tls-policy.ts says what each role gets by default).
 *
 * TLS 1.3 suites (TLS_…) are written in the same string; they are all AEAD
 * with forward secrecy. A string without any leaves TLS 1.3 off.
 */
import * as tls from "node:tls";

/** Appended to every configured TLS 1.2 cipher list. */
const NEVER = "!aNULL:!eNULL:!EXPORT:!LOW:!DES:!3DES:!RC4:!MD5";

/**
 * The cipher string a context is built with. Only the TLS 1.2 part takes the
 * exclusions (a list of nothing but exclusions would match no cipher).
 */
export function effectiveCiphers(configured: string): string {
  const parts = configured.split(":").filter((p) => p.length > 0);
  const tls12 = parts.filter((p) => !p.startsWith("TLS_"));
  return tls12.length === 0 ? parts.join(":") : [...parts, NEVER].join(":");
}

/** Why OpenSSL refuses a cipher string (after the exclusions), or undefined when it builds a context. */
export function cipherStringProblem(ciphers: string): string | undefined {
  try {
    tls.createSecureContext({ ciphers: effectiveCiphers(ciphers) });
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
