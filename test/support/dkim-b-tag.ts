/**
 * The header.b= that Authentication-Results gives a DKIM signature: the first
 * 8 characters of its b= (RFC 6008), quoted when they hold a "/" — a property
 * value is a token or a quoted-string (RFC 8601 §2.2), and "/" is one of
 * RFC 2045's tspecials, which a token cannot hold. Keys are made per run, so
 * either happens.
 */
export function bTag(signature: string): string {
  const b = /;b=([A-Za-z0-9+/]{8})/.exec(signature.replace(/\s+/g, ""))![1];
  return b.includes("/") ? `"${b}"` : b;
}
