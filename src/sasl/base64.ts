/**
 * Base64 as SASL profiles carry it (RFC 4648 §4): SMTP AUTH responses
 * (RFC 4954 §4) and SCRAM attributes (RFC 5802 §7) must be padded and use the
 * canonical alphabet only; anything else is refused, not guessed at.
 */

const B64_PADDED = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict (padded, canonical-alphabet) base64 decode; null if not valid base64. */
export function decodeBase64Strict(s: string): Buffer | null {
  if (!B64_PADDED.test(s)) return null;
  return Buffer.from(s, "base64");
}
