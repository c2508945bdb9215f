/**
 * SPF (RFC 7208): is the connecting IP allowed to send for the domain of MAIL FROM, or of HELO?
 * mailauth's check_host() in its strict mode (the RFC's limits exactly: 10 DNS-querying terms,
 * 2 void lookups, syntax checked before evaluation), asked through Petrel's resolver.
 *
 * Two identities (RFC 7208 §2.3, §2.4): MAIL FROM, and HELO — checked on its own, and standing in
 * for MAIL FROM when the reverse-path is null (bounces), as postmaster@<HELO>.
 */
// The subpath, not the package's index, which loads BIMI and VMC validation too (node-forge, undici, …).
import { spf as checkHost } from "mailauth/lib/spf/index.js";
import type { DNSResolver, SPFResult } from "mailauth";
import type { MailauthResolver } from "./dns-resolver.ts";

export type SpfResult = "pass" | "fail" | "softfail" | "neutral" | "none" | "temperror" | "permerror";

export interface SpfOutcome {
  readonly result: SpfResult;
  /** Which identity was checked. */
  readonly identity: "mailfrom" | "helo";
  /** The domain whose policy was evaluated (what DMARC aligns with on pass). */
  readonly domain: string;
  /** The receiver's explanation, for logs and the Received-SPF comment. */
  readonly comment: string;
  /** The Authentication-Results resinfo ("spf=pass smtp.mailfrom=…", RFC 8601 §2.7.2). */
  readonly authResults: string;
  /** A whole `Received-SPF:` field (RFC 7208 §9.1), folded, without the final CRLF. */
  readonly receivedSpf: string;
  /** The domain's own explanation of a fail (exp= modifier, RFC 7208 §6.2): third-party text. */
  readonly explanation?: string;
  /** DNS-querying terms used, and void lookups. */
  readonly lookups: { readonly count: number; readonly void: number };
}

export interface SpfOptions {
  readonly resolver: MailauthResolver;
  /** This server's name, in the comments ("mx.example.net: domain of … designates …"). */
  readonly hostname: string;
  /** Whole evaluation, ms; then temperror (RFC 7208 §4.6.4: at least 20 s). Default 20 s. */
  readonly timeLimit?: number;
}

export interface SpfIdentity {
  /** The connecting client's address. */
  readonly ip: string;
  /** The HELO/EHLO argument. */
  readonly helo: string;
}

export const DEFAULT_SPF_TIME_LIMIT = 20_000;

/** The MAIL FROM identity; a null reverse-path (`mailFrom` "" or null) checks the HELO identity. */
export function checkSpfMailFrom(client: SpfIdentity, mailFrom: string | null, options: SpfOptions): Promise<SpfOutcome> {
  return evaluate(client, mailFrom === null || mailFrom === "" ? undefined : mailFrom, options);
}

/** The HELO identity (RFC 7208 §2.3): "none" when HELO is not a domain name (an address literal). */
export function checkSpfHelo(client: SpfIdentity, options: SpfOptions): Promise<SpfOutcome> {
  return evaluate(client, undefined, options);
}

async function evaluate(client: SpfIdentity, sender: string | undefined, options: SpfOptions): Promise<SpfOutcome> {
  const r: SPFResult = await checkHost({
    ip: client.ip,
    helo: client.helo,
    ...(sender === undefined ? {} : { sender }),
    mta: options.hostname,
    resolver: options.resolver as DNSResolver,
    strict: true,
    maxElapsedTime: options.timeLimit ?? DEFAULT_SPF_TIME_LIMIT,
  });
  return {
    result: r.status.result as SpfResult,
    identity: sender === undefined ? "helo" : "mailfrom",
    domain: r.domain,
    comment: r.status.comment ?? "",
    authResults: r.info,
    receivedSpf: r.header,
    ...(r.explanation === undefined ? {} : { explanation: r.explanation }),
    lookups: { count: r.lookups?.count ?? 0, void: r.lookups?.void ?? 0 },
  };
}
