import type { SessionLimits } from "./session-options.ts";

/**
 * The SMTP service extensions a server session offers (RFC 5321 §4.1.1.1),
 * in one place: the EHLO keywords, and which MAIL and RCPT parameters are
 * accepted. An extension's parameters are accepted exactly when the
 * extension is in effect, so what is advertised and what is accepted cannot
 * drift apart.
 */

/** What decides which extensions are in effect at this point of the session. */
export interface ExtensionView {
  readonly limits: SessionLimits;
  /** EHLO (not HELO) was given: ESMTP parameters may be used (RFC 5321 §4.1.1.1). */
  readonly esmtp: boolean;
  readonly tls: boolean;
  readonly startTlsAvailable: boolean;
  readonly authMechanisms: readonly string[];
  /** AUTH can be used on this listener: mechanisms are configured and the handler can run an exchange. */
  readonly authEnabled: boolean;
  readonly authenticated: boolean;
}

/** EHLO keywords: exactly what the session implements now. */
export function ehloKeywords(v: ExtensionView): string[] {
  const l = v.limits;
  const keywords = [
    "PIPELINING",
    `SIZE ${l.messageSize}`,
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "CHUNKING",
    "DSN",
  ];
  if (!v.tls && v.startTlsAvailable) keywords.push("STARTTLS");
  if (v.tls && v.authEnabled && !v.authenticated) keywords.push(`AUTH ${v.authMechanisms.join(" ")}`);
  // RFC 8689 §4: REQUIRETLS is only offered on a TLS-protected session.
  if (v.tls) keywords.push("REQUIRETLS");
  keywords.push(`LIMITS RCPTMAX=${l.recipients} MAILMAX=${l.messagesPerConnection}`);
  return keywords;
}

/** The MAIL parameters accepted now (see mail-parameters.ts). */
export function mailParameterSupport(v: ExtensionView): {
  size: boolean; eightBitMime: boolean; smtputf8: boolean; dsn: boolean; auth: boolean; requireTls: boolean;
} {
  const e = v.esmtp;
  // RFC 4954 §5: AUTH= is allowed whenever AUTH was offered (clients such as
  // Postfix and Exim send AUTH=<> then), and after a successful AUTH.
  const authOffered = v.authenticated || (v.tls && v.authEnabled);
  return { size: e, eightBitMime: e, smtputf8: e, dsn: e, auth: e && authOffered, requireTls: e && v.tls };
}

/** The RCPT parameters accepted now. */
export function rcptParameterSupport(v: ExtensionView): { dsn: boolean } {
  return { dsn: v.esmtp };
}
