/**
 * The SMTP service extensions a server session offers (RFC 5321 §4.1.1.1),
 * in one place: the EHLO keywords, and which MAIL and RCPT parameters are
 * accepted. An extension's parameters are accepted exactly when the
 * extension is in effect, so what is advertised and what is accepted cannot
 * drift apart.
 *
 * A listener can hide extensions (`listeners[].hide`, as Postfix's
 * smtpd_discard_ehlo_keywords and smtp-server's hide* options): a hidden
 * extension is not advertised and is treated as not implemented — its MAIL
 * and RCPT parameters get 555 5.5.4 (RFC 5321 §4.1.1.11), STARTTLS 502 5.5.1,
 * AUTH 503 5.5.1, BDAT 521 5.5.1 and the connection is closed (its chunk
 * cannot be read as commands), and without ENHANCEDSTATUSCODES replies carry
 * no enhanced status code (RFC 2034). Hiding PIPELINING or LIMITS changes
 * only the EHLO reply: pipelined input is answered as before and the limits
 * still hold.
 */

/** The EHLO keywords Petrel offers, each of which a listener may hide. */
export const EXTENSIONS = [
  "PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN", "STARTTLS", "AUTH",
  "REQUIRETLS", "LIMITS",
] as const;
export type Extension = (typeof EXTENSIONS)[number];

/** What decides which extensions are in effect at this point of the session. */
export interface ExtensionView {
  /** The limits the EHLO reply announces (SIZE, LIMITS). */
  readonly limits: { readonly messageSize: number; readonly recipients: number; readonly messagesPerConnection: number };
  readonly hidden: ReadonlySet<Extension>;
  /** EHLO (not HELO) was given: ESMTP parameters may be used (RFC 5321 §4.1.1.1). */
  readonly esmtp: boolean;
  readonly tls: boolean;
  /** STARTTLS can be used on this listener: a certificate exists and it is not hidden. */
  readonly startTlsEnabled: boolean;
  readonly authMechanisms: readonly string[];
  /** AUTH can be used on this listener: mechanisms are configured, the handler can run an exchange, it is not hidden. */
  readonly authEnabled: boolean;
  readonly authenticated: boolean;
}

/** EHLO keywords: exactly what the session implements now. */
export function ehloKeywords(v: ExtensionView): string[] {
  const l = v.limits;
  const keywords: [Extension, string][] = [
    ["PIPELINING", "PIPELINING"],
    ["SIZE", `SIZE ${l.messageSize}`],
    ["8BITMIME", "8BITMIME"],
    ["SMTPUTF8", "SMTPUTF8"],
    ["ENHANCEDSTATUSCODES", "ENHANCEDSTATUSCODES"],
    ["CHUNKING", "CHUNKING"],
    ["DSN", "DSN"],
  ];
  if (!v.tls && v.startTlsEnabled) keywords.push(["STARTTLS", "STARTTLS"]);
  if (v.tls && v.authEnabled && !v.authenticated) keywords.push(["AUTH", `AUTH ${v.authMechanisms.join(" ")}`]);
  // RFC 8689 §4: REQUIRETLS is only offered on a TLS-protected session.
  if (v.tls) keywords.push(["REQUIRETLS", "REQUIRETLS"]);
  keywords.push(["LIMITS", `LIMITS RCPTMAX=${l.recipients} MAILMAX=${l.messagesPerConnection}`]);
  return keywords.filter(([ext]) => !v.hidden.has(ext)).map(([, keyword]) => keyword);
}

/** The MAIL parameters accepted now (see mail-parameters.ts). */
export function mailParameterSupport(v: ExtensionView): {
  size: boolean; eightBitMime: boolean; smtputf8: boolean; dsn: boolean; auth: boolean; requireTls: boolean;
} {
  const on = (ext: Extension): boolean => v.esmtp && !v.hidden.has(ext);
  // RFC 4954 §5: AUTH= is allowed whenever AUTH was offered (clients such as
  // Postfix and Exim send AUTH=<> then), and after a successful AUTH.
  const authOffered = v.authenticated || (v.tls && v.authEnabled);
  return {
    size: on("SIZE"), eightBitMime: on("8BITMIME"), smtputf8: on("SMTPUTF8"), dsn: on("DSN"),
    auth: v.esmtp && authOffered, requireTls: on("REQUIRETLS") && v.tls,
  };
}

/** The RCPT parameters accepted now. */
export function rcptParameterSupport(v: ExtensionView): { dsn: boolean } {
  return { dsn: v.esmtp && !v.hidden.has("DSN") };
}
