/**
 * SASL (RFC 4422) server exchanges as pure state machines: the protocol that carries them (SMTP
 * AUTH, RFC 4954) decodes each client response and feeds it to `step`; the step says what to
 * send back. One declaration of the step, used by the SMTP engine and by every mechanism.
 */
import type { ScramVerifier } from "./scram.ts";

export type SaslStep =
  /** A server challenge: SMTP sends "334 base64(data)" ("334 " alone when data is empty). */
  | { readonly kind: "challenge"; readonly data: Buffer }
  /**
   * Authenticated as `user`. `data` is "additional data with success" (RFC 4422 §3.6), e.g.
   * SCRAM's server-final message; SMTP's 235 reply has no field for it, so the engine sends it
   * as one more 334 challenge and expects an empty response before the 235 (RFC 4422 §4 item 3c).
   */
  | { readonly kind: "success"; readonly user: string; readonly data?: Buffer }
  /** "credentials" and "authzid" give 535 5.7.8, "malformed" 501 5.5.2 (RFC 4954 §6). */
  | { readonly kind: "failure"; readonly reason: "credentials" | "malformed" | "authzid" };

export interface SaslExchange {
  /** `response` is the client's decoded response; null for "no initial response" (AUTH without one). */
  step(response: Buffer | null): Promise<SaslStep>;
}

/** What a mechanism asks of the account store (it implements this). */
export interface SaslCredentials {
  /** Verify a plain password for an authentication identity; resolves the canonical user name or null. */
  verifyPlain(authcid: string, password: string): Promise<string | null>;
  /** The SCRAM-SHA-256 verifier for a user, or null if unknown / none stored. */
  scramVerifier(authcid: string): Promise<(ScramVerifier & { readonly user: string }) | null>;
}

export const FAIL_MALFORMED: SaslStep = { kind: "failure", reason: "malformed" };
export const FAIL_CREDENTIALS: SaslStep = { kind: "failure", reason: "credentials" };
export const FAIL_AUTHZID: SaslStep = { kind: "failure", reason: "authzid" };

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Strict UTF-8 decode; null on invalid UTF-8. */
export function decodeUtf8(b: Uint8Array): string | null {
  try {
    return utf8.decode(b);
  } catch {
    return null;
  }
}
