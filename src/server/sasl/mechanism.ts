/**
 * SASL (RFC 4422) server mechanisms for SMTP AUTH, as pure state machines: the SMTP engine
 * decodes each client line from base64 and feeds it to `step`; the exchange says what to send.
 *
 * How the SMTP engine must carry a step (RFC 4954):
 *  - `challenge`  → `334 <base64(data)>` (`334 ` followed by nothing when data is empty).
 *  - `failure`    → `535 5.7.8` for "credentials" and "authzid", `501 5.5.2` for "malformed".
 *  - `success` without data → `235 2.7.0 Authentication successful`.
 *  - `success` WITH data (SCRAM's server-final "v=..."): RFC 4954 §4 — SMTP's 235 reply has no
 *    field for SASL "additional data with success" (RFC 4422 §3.6 / §4 item 3c), so the server
 *    sends that data in one more `334 <base64(data)>` challenge, the client answers with an empty
 *    line, and only then does the server send `235`. (If the client answers `*` instead, the
 *    exchange is cancelled: 501.) Petrel's authentication decision is already made when the
 *    success step is returned; the extra round trip only lets the client verify the server.
 *    NOTE (helper's report): the RFC 4954 text itself could not be fetched while writing this;
 *    the rule above is what mox/Cyrus-based servers do on the wire and what RFC 4422 requires
 *    of a protocol without a success-data field — the lead should re-check RFC 4954 §4 wording.
 */
import { PlainExchange } from "./plain.ts";
import { LoginExchange } from "./login.ts";
import { ScramSha256Exchange } from "./scram-sha-256.ts";

/** Implemented by the account store / config users. */
export interface SaslCredentials {
  /** Verify a plain password for an authentication identity; resolves the canonical user name or null. */
  verifyPlain(authcid: string, password: string): Promise<string | null>;
  /** The SCRAM-SHA-256 verifier for a user, or null if unknown / none stored. */
  scramVerifier(authcid: string): Promise<{ user: string; iterations: number; salt: Buffer; storedKey: Buffer; serverKey: Buffer } | null>;
}

export type SaslStep =
  | { kind: "challenge"; data: Buffer } // send "334 base64(data)"
  | { kind: "success"; user: string; data?: Buffer } // data = additional data with success (SCRAM server-final)
  | { kind: "failure"; reason: "credentials" | "malformed" | "authzid" };

export interface SaslExchange {
  /** response = the client's decoded response; null for "no initial response" (AUTH without the IR argument) */
  step(response: Buffer | null): Promise<SaslStep>;
}

export type SaslMechanismName = "PLAIN" | "LOGIN" | "SCRAM-SHA-256";

export const SASL_MECHANISMS: readonly SaslMechanismName[] = ["SCRAM-SHA-256", "PLAIN", "LOGIN"];

export interface SaslExchangeOptions {
  /** The server nonce for SCRAM (printable ASCII, no ","); random when absent. For tests. */
  nonce?: () => string;
}

export function isSaslMechanismName(name: string): name is SaslMechanismName {
  return (SASL_MECHANISMS as readonly string[]).includes(name);
}

export function startExchange(mechanism: SaslMechanismName, credentials: SaslCredentials, options?: SaslExchangeOptions): SaslExchange {
  switch (mechanism) {
    case "PLAIN":
      return new PlainExchange(credentials);
    case "LOGIN":
      return new LoginExchange(credentials);
    case "SCRAM-SHA-256":
      return new ScramSha256Exchange(credentials, options);
    default:
      throw new Error(`unsupported SASL mechanism: ${String(mechanism)}`);
  }
}

// ---- helpers shared by the mechanisms -------------------------------------------------------

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
