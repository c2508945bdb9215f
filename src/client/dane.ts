/**
 * Authenticating an SMTP server by its TLSA records — DANE for SMTP (RFC 7672 §3, with the
 * usages of RFC 7671 §5 and the matching of RFC 6698 §2.1): after the TLS handshake, the
 * certificates the server presented are checked against the usable records, not against a
 * list of certificate authorities.
 *
 * - DANE-EE(3): the server's own certificate (selector 0) or public key (selector 1) matches;
 *   its names and validity dates are not checked (RFC 7672 §3.1.1).
 * - DANE-TA(2): a certificate of the presented chain matches and is the trust anchor: the chain
 *   from the server's certificate up to it must verify (signatures, issuer names, CA flags,
 *   validity dates), and the server's certificate must carry one of the reference names — the
 *   MX host name, or the destination domain (RFC 7672 §3.1.2, §3.2.3).
 * - Matching type 0 compares the data itself, 1 its SHA-256, 2 its SHA-512.
 * PKIX-TA(0) and PKIX-EE(1) and unknown selectors and matching types are not usable for SMTP
 * (RFC 7672 §3.1.3): they are ignored here (and the agent does not ask for DANE without one).
 */
import { createHash, X509Certificate } from "node:crypto";
import type * as tls from "node:tls";
import type { TlsaRecord } from "../dns/tlsa.ts";

export interface DaneAuthentication {
  /** The usable TLSA records of the server (authentic: DNSSEC-validated). */
  readonly tlsa: readonly TlsaRecord[];
  /** Names the certificate may carry for DANE-TA: the MX host name first, then the destination domain. */
  readonly names: readonly string[];
}

/** Why the check failed, in the words of TLS-RPT's result types (RFC 8460 §4.3). */
export type DaneFailure = "validation-failure" | "certificate-host-mismatch" | "certificate-expired";

export type DaneVerdict =
  | { readonly ok: true; readonly usage: "DANE-EE" | "DANE-TA"; readonly record: TlsaRecord }
  | { readonly ok: false; readonly failure: DaneFailure; readonly reason: string };

export function usableForSmtp(r: TlsaRecord): boolean {
  return (r.usage === 2 || r.usage === 3) && (r.selector === 0 || r.selector === 1) && r.matchingType >= 0 && r.matchingType <= 2;
}

function associationData(cert: X509Certificate, selector: number): Buffer {
  return selector === 0 ? cert.raw : cert.publicKey.export({ type: "spki", format: "der" });
}

function matches(cert: X509Certificate, r: TlsaRecord): boolean {
  const data = associationData(cert, r.selector);
  const digest = r.matchingType === 0 ? data : createHash(r.matchingType === 1 ? "sha256" : "sha512").update(data).digest();
  return digest.equals(r.data);
}

function current(cert: X509Certificate, now: number): boolean {
  return Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo);
}

/** `chain`: as presented, the server's certificate first. */
export function verifyDane(chain: readonly X509Certificate[], auth: DaneAuthentication, now: number = Date.now()): DaneVerdict {
  const usable = auth.tlsa.filter(usableForSmtp);
  const leaf = chain[0];
  if (leaf === undefined) return { ok: false, failure: "validation-failure", reason: "the server presented no certificate" };
  const ee = usable.find((r) => r.usage === 3 && matches(leaf, r));
  if (ee) return { ok: true, usage: "DANE-EE", record: ee };

  const ta = usable.filter((r) => r.usage === 2);
  let problem: { failure: DaneFailure; reason: string } | undefined;
  // Walk up from the server's certificate through the presented chain to a certificate a DANE-TA record matches.
  let child = leaf;
  const path = [leaf];
  for (let i = 1; i < chain.length && ta.length > 0; i++) {
    const issuer = chain[i];
    if (!child.checkIssued(issuer) || !child.verify(issuer.publicKey) || !issuer.ca) break;
    const anchor = ta.find((r) => matches(issuer, r));
    if (anchor) {
      const stale = path.find((c) => !current(c, now));
      if (stale) {
        problem = { failure: "certificate-expired", reason: `the certificate of ${stale.subject.replace(/\n/g, ", ")} is outside its validity period (${stale.validFrom} to ${stale.validTo})` };
        break;
      }
      const name = auth.names.find((n) => leaf.checkHost(n) !== undefined);
      if (name === undefined) {
        problem = { failure: "certificate-host-mismatch", reason: `the certificate chains to the DANE-TA trust anchor but is not valid for ${auth.names.join(" or ")}` };
        break;
      }
      return { ok: true, usage: "DANE-TA", record: anchor };
    }
    path.push(issuer);
    child = issuer;
  }
  return { ok: false, ...(problem ?? { failure: "validation-failure", reason: "no TLSA record matches the certificate chain the server presented" }) };
}

/** The chain a TLS socket's peer presented, its own certificate first (Node links each certificate to its issuer). */
export function presentedChain(socket: tls.TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (c && c.raw && out.length < 16) {
    const key = c.fingerprint256;
    if (seen.has(key)) break;
    seen.add(key);
    out.push(new X509Certificate(c.raw));
    c = c.issuerCertificate && c.issuerCertificate !== c ? c.issuerCertificate : undefined;
  }
  return out;
}
