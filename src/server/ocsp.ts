/**
 * OCSP (RFC 6960) as a TLS server needs it for stapling (RFC 6066 §8): the
 * request for one certificate, and the checks a response must pass before
 * it is handed to clients — it answers for this certificate, is signed by
 * its issuer (or by a responder the issuer delegated to, §4.2.2.2), and is
 * current. The ASN.1 is @peculiar/asn1-ocsp's; the cryptography is Node's.
 */
import { createHash, verify, X509Certificate } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate } from "@peculiar/asn1-x509";
import {
  BasicOCSPResponse, CertID, id_kp_OCSPSigning, id_pkix_ocsp_basic, OCSPRequest, OCSPResponse,
  OCSPResponseStatus, Request, TBSRequest,
} from "@peculiar/asn1-ocsp";

/** Node's "OCSPRequest" as a lookup: the DER response to staple for `certificate`, or null. */
export type OcspResponder = (certificate: Buffer, issuer: Buffer | null) => Buffer | null;

/** A certificate that names an OCSP responder, with its issuer from the same chain. */
export interface OcspSubject {
  readonly leaf: X509Certificate;
  readonly issuer: X509Certificate;
  /** The responder's URL from the leaf's Authority Information Access. */
  readonly url: string;
}

export interface OcspStatus {
  readonly status: "good" | "revoked" | "unknown";
  readonly thisUpdate: number;
  /** Absent: the responder promises nothing; Petrel refreshes hourly then. */
  readonly nextUpdate: number | undefined;
  readonly der: Buffer;
}

const SHA1 = "1.3.14.3.2.26";
/** Clock skew tolerated between the responder and this server. */
const SKEW = 5 * 60_000;

/** The leaf of a PEM chain, if it names an OCSP responder over HTTP and its issuer is in the chain. */
export function ocspSubject(chainPem: string | Buffer): OcspSubject | undefined {
  const blocks = String(chainPem).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length < 2) return undefined;
  const [leaf, ...rest] = blocks.map((b) => new X509Certificate(b));
  const url = /OCSP - URI:(http:\/\/\S+)/.exec(leaf.infoAccess ?? "")?.[1];
  const issuer = rest.find((c) => leaf.checkIssued(c) && leaf.verify(c.publicKey));
  return url && issuer ? { leaf, issuer, url } : undefined;
}

function certId(s: OcspSubject): CertID {
  const issuer = AsnConvert.parse(s.issuer.raw, Certificate).tbsCertificate;
  const leaf = AsnConvert.parse(s.leaf.raw, Certificate).tbsCertificate;
  const sha1 = (data: ArrayBuffer) => new OctetString(createHash("sha1").update(Buffer.from(data)).digest());
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA1, parameters: null }),
    issuerNameHash: sha1(AsnConvert.serialize(issuer.subject)),
    issuerKeyHash: sha1(issuer.subjectPublicKeyInfo.subjectPublicKey),
    serialNumber: leaf.serialNumber,
  });
}

/** The DER OCSPRequest for the subject (no nonce: a stapled response is shared by every client). */
export function ocspRequest(s: OcspSubject): Buffer {
  const request = new OCSPRequest({ tbsRequest: new TBSRequest({ requestList: [new Request({ reqCert: certId(s) })] }) });
  return Buffer.from(AsnConvert.serialize(request));
}

/** Why a response cannot be stapled. */
export class OcspError extends Error {
  override readonly name = "OcspError";
}

/** Check a DER OCSPResponse for `s` at time `now`; throws OcspError with the reason. */
export function checkOcspResponse(der: Buffer, s: OcspSubject, now: number): OcspStatus {
  let response: OCSPResponse;
  try {
    response = AsnConvert.parse(der, OCSPResponse);
  } catch (err) {
    throw new OcspError(`not an OCSP response (${(err as Error).message})`);
  }
  if (response.responseStatus !== OCSPResponseStatus.successful) {
    throw new OcspError(`the responder answered ${OCSPResponseStatus[response.responseStatus] ?? response.responseStatus}`);
  }
  if (!response.responseBytes || response.responseBytes.responseType !== id_pkix_ocsp_basic) throw new OcspError("not a basic OCSP response");
  const basic = AsnConvert.parse(response.responseBytes.response.buffer, BasicOCSPResponse);
  const want = certId(s);
  const single = basic.tbsResponseData.responses.find(
    (r) => bufEq(r.certID.serialNumber, want.serialNumber) && bufEq(r.certID.issuerKeyHash.buffer, want.issuerKeyHash.buffer),
  );
  if (!single) throw new OcspError("the response is not about this certificate");
  const signer = responseSigner(basic, s.issuer);
  const digest = signatureDigest(basic.signatureAlgorithm.algorithm);
  const tbs = Buffer.from(basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData));
  if (!verify(digest, tbs, signer.publicKey, Buffer.from(basic.signature))) throw new OcspError("the response's signature does not verify");
  const thisUpdate = single.thisUpdate.getTime();
  const nextUpdate = single.nextUpdate?.getTime();
  if (thisUpdate > now + SKEW) throw new OcspError(`the response is from the future (thisUpdate ${single.thisUpdate.toISOString()})`);
  if (nextUpdate !== undefined && nextUpdate <= now) throw new OcspError(`the response expired at ${single.nextUpdate!.toISOString()}`);
  const status = single.certStatus.revoked ? "revoked" : single.certStatus.unknown !== undefined ? "unknown" : "good";
  return { status, thisUpdate, nextUpdate, der };
}

/** The issuer itself, or a certificate in the response that the issuer signed for OCSP signing (RFC 6960 §4.2.2.2). */
function responseSigner(basic: BasicOCSPResponse, issuer: X509Certificate): X509Certificate {
  const issuerTbs = AsnConvert.parse(issuer.raw, Certificate).tbsCertificate;
  const { byKey, byName } = basic.tbsResponseData.responderID;
  const namesIssuer = byKey
    ? Buffer.from(byKey.buffer).equals(createHash("sha1").update(Buffer.from(issuerTbs.subjectPublicKeyInfo.subjectPublicKey)).digest())
    : byName !== undefined && Buffer.from(AsnConvert.serialize(byName)).equals(Buffer.from(AsnConvert.serialize(issuerTbs.subject)));
  if (namesIssuer) return issuer;
  for (const c of basic.certs ?? []) {
    const x = new X509Certificate(Buffer.from(AsnConvert.serialize(c)));
    if (x.checkIssued(issuer) && x.verify(issuer.publicKey) && (x.keyUsage ?? []).includes(id_kp_OCSPSigning)) return x;
  }
  throw new OcspError("the response is signed neither by the issuer nor by a responder it delegated to");
}

function signatureDigest(oid: string): string | null {
  const digests: Record<string, string | null> = {
    "1.2.840.113549.1.1.5": "sha1", "1.2.840.113549.1.1.11": "sha256", "1.2.840.113549.1.1.12": "sha384", "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.10045.4.1": "sha1", "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384", "1.2.840.10045.4.3.4": "sha512",
    "1.3.101.112": null,
  };
  if (!(oid in digests)) throw new OcspError(`unsupported signature algorithm ${oid}`);
  return digests[oid];
}

function bufEq(a: ArrayBuffer, b: ArrayBuffer): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}
