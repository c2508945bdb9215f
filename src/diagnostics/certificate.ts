/**
 * Findings about one certificate — as a server sent it (`petrel check`) or
 * as a file holds it (`petrel doctor`): who it is for and who issued it,
 * whether its chain verified, whether it carries the name clients ask for,
 * and how long it stays valid (a warning from 14 days before expiry: ACME
 * clients renew at 30 days left, so 14 means renewal has been failing).
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import * as tls from "node:tls";
import { altNames } from "../server/tls-certificates.ts";
import { fail, info, ok, warn, type Finding } from "./finding.ts";

export const EXPIRY_WARNING_DAYS = 14;
const DAY_MS = 86_400_000;

export interface CertificateFacts {
  /** "CN=mx.example.com". */
  readonly subject: string;
  /** "O=Let's Encrypt, CN=R11". */
  readonly issuer: string;
  /** DNS names and IP addresses of the subjectAltName. */
  readonly names: readonly string[];
  readonly validFrom: Date;
  readonly validTo: Date;
  readonly selfSigned: boolean;
  /** Why the chain did not verify (OpenSSL's code), null when it verified, undefined when not checked. */
  readonly chainError?: string | null;
  /** Does the certificate carry this name (a host name or an IP address)? */
  covers(name: string): boolean;
}

/** The names of OpenSSL verify codes that mean "no trusted issuer" rather than a broken certificate. */
const UNTRUSTED = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UNABLE_TO_GET_ISSUER_CERT", "CERT_UNTRUSTED",
]);
const FROM_A_CA = "use a certificate from a public CA (free from Let's Encrypt with certbot or any ACME client) and configure it as tls.cert / tls.key";

export interface CertificateContext {
  /** The name clients connect to and the certificate must carry. */
  readonly name: string;
  readonly now: number;
  /** Clients refuse a bad certificate here (submission); on port 25 most senders accept any: warn only. */
  readonly strict: boolean;
  /** "certificate" by default. */
  readonly check?: string;
  /** The fix for a self-signed certificate, when it is not "get one from a CA" (an ACME placeholder). */
  readonly selfSignedFix?: string;
}

export function certificateFindings(c: CertificateFacts, ctx: CertificateContext): Finding[] {
  const check = ctx.check ?? "certificate";
  const bad = ctx.strict ? fail : warn;
  const out: Finding[] = [];
  out.push(info(check, `for ${c.names.length > 0 ? c.names.join(", ") : c.subject}, issued by ${c.selfSigned ? "itself (self-signed)" : c.issuer}, valid until ${c.validTo.toISOString()}`));

  if (c.chainError === null) out.push(ok(check, "the chain verifies up to a trusted authority"));
  else if (c.selfSigned || (c.chainError !== undefined && UNTRUSTED.has(c.chainError))) {
    const why = c.selfSigned ? "is self-signed" : `does not lead to an authority this machine trusts (${c.chainError})`;
    out.push(bad(check, `the certificate ${why}: ${ctx.strict ? "mail clients refuse it" : "senders that verify (MTA-STS, DANE) refuse it; most others accept it"}`,
      c.selfSigned ? ctx.selfSignedFix ?? FROM_A_CA : `${FROM_A_CA}; if it is from a CA already, put the intermediate certificates after it in the same file (the full chain)`));
  } else if (c.chainError !== undefined) {
    out.push(bad(check, `the certificate chain does not verify (${c.chainError})`, FROM_A_CA));
  }

  if (c.covers(ctx.name)) out.push(ok(check, `it carries the name ${ctx.name}`));
  else {
    out.push(bad(check, `it is not for ${ctx.name} (it names ${c.names.length > 0 ? c.names.join(", ") : c.subject}): ${ctx.strict ? "clients refuse it" : "senders that verify refuse it"}`,
      `get a certificate that includes ${ctx.name}, or make ${ctx.name} the name clients use (hostname: in the config, the MX record)`));
  }

  const daysLeft = Math.floor((c.validTo.getTime() - ctx.now) / DAY_MS);
  if (c.validFrom.getTime() > ctx.now) {
    out.push(fail(check, `it is not valid before ${c.validFrom.toISOString()}`, "check this machine's clock, or wait for the certificate's start date"));
  } else if (c.validTo.getTime() <= ctx.now) {
    out.push(fail(check, `it expired on ${c.validTo.toISOString()}: clients refuse it`, "renew it (certbot renew, or your ACME client) and check that renewal runs by itself"));
  } else if (daysLeft < EXPIRY_WARNING_DAYS) {
    out.push(warn(check, `it expires in ${daysLeft} day${daysLeft === 1 ? "" : "s"} (${c.validTo.toISOString()})`, "renew it now; automatic renewal (30 days before expiry) seems not to work"));
  } else {
    out.push(ok(check, `valid for ${daysLeft} more days`));
  }
  return out;
}

/** The facts of a certificate a server sent, with how the handshake judged it (TlsInfo.authorizationError). */
export function peerCertificateFacts(cert: tls.DetailedPeerCertificate, authorizationError: string | undefined): CertificateFacts {
  const x509 = cert.raw ? new X509Certificate(cert.raw) : undefined;
  // Node checks the name only when the chain verified: an ALTNAME error means the chain was fine.
  const chainError = authorizationError === undefined || authorizationError === "ERR_TLS_CERT_ALTNAME_INVALID" ? null : authorizationError;
  return {
    subject: dn(cert.subject),
    issuer: dn(cert.issuer),
    names: altNames(cert.subjectaltname),
    validFrom: new Date(cert.valid_from),
    validTo: new Date(cert.valid_to),
    selfSigned: x509 !== undefined && x509.issuer === x509.subject && x509.verify(x509.publicKey),
    chainError,
    covers: (name) => tls.checkServerIdentity(name, cert) === undefined,
  };
}

/** The facts of a certificate file's leaf (the first certificate in the PEM). */
export function fileCertificateFacts(pem: string | Buffer): CertificateFacts {
  const x509 = new X509Certificate(pem);
  return {
    subject: x509.subject.split("\n").join(", "),
    issuer: x509.issuer.split("\n").join(", "),
    names: altNames(x509.subjectAltName),
    validFrom: new Date(x509.validFrom),
    validTo: new Date(x509.validTo),
    selfSigned: x509.issuer === x509.subject && x509.verify(x509.publicKey),
    covers: (name) => (isIP(name) ? x509.checkIP(name) : x509.checkHost(name)) !== undefined,
  };
}

function dn(fields: tls.Certificate | undefined): string {
  if (!fields) return "";
  return Object.entries(fields).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`).join(", ");
}
