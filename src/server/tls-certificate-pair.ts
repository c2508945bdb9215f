/**
 * One certificate and its private key, loaded and validated: the PEM parses,
 * the key belongs to the leaf, and OpenSSL accepts the pair with Petrel's
 * protocol floor. What cannot be used is a TlsCertificateError naming the
 * files and the reason, so that start-up and a hot reload report it alike.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import * as tls from "node:tls";
import type { TlsMinVersion } from "../config/schema.ts";

export interface CertKeyPaths {
  /** Certificate chain, PEM, leaf first. */
  cert: string;
  /** Private key, PEM, matching the leaf. */
  key: string;
}

/** What is known of a loaded certificate, for logs and the admin API. */
export interface CertificateInfo {
  certPath: string;
  keyPath: string;
  subject: string;
  subjectAltName: string | undefined;
  validFrom: Date;
  validTo: Date;
  fingerprint256: string;
}

/** A certificate/key pair that could not be loaded. */
export class TlsCertificateError extends Error {
  override readonly name = "TlsCertificateError";
  readonly certPath: string;
  readonly keyPath: string;
  /** What is wrong, without the paths prefix. */
  readonly reason: string;
  constructor(paths: CertKeyPaths, reason: string, options?: { cause?: unknown }) {
    super(`TLS certificate ${paths.cert} with key ${paths.key}: ${reason}`, options);
    this.certPath = paths.cert;
    this.keyPath = paths.key;
    this.reason = reason;
  }
}

export interface Loaded {
  certPem: Buffer;
  keyPem: Buffer;
  /** Contexts of this pair by cipher string, made when a role first asks. */
  contexts: Map<string, tls.SecureContext>;
  info: CertificateInfo;
}

/** Validate a pair and make its SecureContext; throws TlsCertificateError. */
export function buildContext(paths: CertKeyPaths, certPem: Buffer, keyPem: Buffer, minVersion: TlsMinVersion): Loaded {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw new TlsCertificateError(paths, `${paths.cert} is not a PEM certificate (${(err as Error).message})`, { cause: err });
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(keyPem));
  } catch (err) {
    throw new TlsCertificateError(paths, `${paths.key} is not an unencrypted PEM private key (${(err as Error).message})`, { cause: err });
  }
  if (!matches) throw new TlsCertificateError(paths, `the key in ${paths.key} does not belong to the certificate in ${paths.cert}`);
  try {
    tls.createSecureContext({ cert: certPem, key: keyPem, minVersion, honorCipherOrder: true });
  } catch (err) {
    throw new TlsCertificateError(paths, `OpenSSL refused the pair (${(err as Error).message})`, { cause: err });
  }
  return {
    certPem,
    keyPem,
    contexts: new Map(),
    info: {
      certPath: paths.cert,
      keyPath: paths.key,
      subject: x509.subject,
      subjectAltName: x509.subjectAltName,
      validFrom: new Date(x509.validFrom),
      validTo: new Date(x509.validTo),
      fingerprint256: x509.fingerprint256,
    },
  };
}
