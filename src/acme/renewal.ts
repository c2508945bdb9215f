/**
 * When a certificate obtained over ACME must be ordered again, when to warn,
 * and how long to wait after a failure. Pure: times in milliseconds since
 * the epoch, given by the caller's clock.
 *
 * Renew at two thirds of the lifetime (Let's Encrypt's advice: day 60 of 90),
 * so that a third of the lifetime is left to retry failures. Warn once less
 * than a sixth is left (15 days of 90): by then renewal has been failing for
 * half of that margin, and a person must look.
 */
import { X509Certificate } from "node:crypto";
import { policyHost } from "../mta-sts/policy.ts";

export interface HeldCertificate {
  readonly notBefore: number;
  readonly notAfter: number;
  /** DNS names of the subjectAltName, lower-case. */
  readonly names: readonly string[];
  /** Signed by its own key: the placeholder served until the first issuance. */
  readonly selfSigned: boolean;
  readonly serialNumber: string;
}

/** Why an order is needed now, or null when the certificate is good for now. */
export type OrderReason = "missing" | "placeholder" | "names" | "due" | null;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** First retry after a failed order; doubled per failure up to MAX_RETRY. */
export const MIN_RETRY = 10 * MINUTE;
export const MAX_RETRY = 12 * HOUR;

export function describeCertificate(pem: string | Buffer): HeldCertificate {
  const x = new X509Certificate(pem);
  const names = (x.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((e) => e.startsWith("DNS:"))
    .map((e) => e.slice(4).toLowerCase());
  return {
    notBefore: Date.parse(x.validFrom),
    notAfter: Date.parse(x.validTo),
    names,
    selfSigned: x.issuer === x.subject && x.verify(x.publicKey),
    serialNumber: x.serialNumber,
  };
}

export function renewalTime(c: HeldCertificate): number {
  return c.notBefore + ((c.notAfter - c.notBefore) * 2) / 3;
}

export function warningTime(c: HeldCertificate): number {
  return c.notAfter - (c.notAfter - c.notBefore) / 6;
}

export function orderReason(c: HeldCertificate | undefined, wanted: readonly string[], now: number): OrderReason {
  if (!c) return "missing";
  if (c.selfSigned) return "placeholder";
  if (wanted.some((n) => !c.names.includes(n.toLowerCase()))) return "names";
  if (now >= renewalTime(c)) return "due";
  return null;
}

/** Wait after the `failures`-th failure in a row (1, 2, …). */
export function retryDelay(failures: number): number {
  return Math.min(MAX_RETRY, MIN_RETRY * 2 ** Math.max(0, Math.min(failures - 1, 20)));
}

/**
 * When to look again after a success or a check that found nothing to do: at the
 * renewal time, and at least twice a day so that a changed list of names is noticed —
 * but not within the hour, so that a CA (or a clock) that makes every new certificate
 * look due at once is not asked again and again.
 */
export function nextCheck(c: HeldCertificate, now: number): number {
  return Math.max(now + HOUR, Math.min(renewalTime(c), now + 12 * HOUR));
}

/**
 * The names a certificate must carry: the hostname first (the subject), the
 * extra names, and mta-sts.<domain> of each policy domain. Names no CA can
 * issue for are left out, lest one of them fail every order: one label, and
 * the special-use names under localhost, local and invalid (RFC 6761, 6762).
 */
export function certificateNames(hostname: string, extra: readonly string[], mtaStsDomains: readonly string[]): string[] {
  const all = [hostname, ...extra, ...mtaStsDomains.map(policyHost)].map((n) => n.toLowerCase());
  return [...new Set(all)].filter((n) => n.includes(".") && !/\.(localhost|local|invalid)$/.test(n));
}
