/**
 * The answers to the ACME challenges in progress, shared between the ACME
 * service (which adds and removes them) and the listeners that serve them:
 *
 * - HTTP-01 (RFC 8555 §8.3): GET /.well-known/acme-challenge/<token> on port
 *   80 answers the key authorization, as text.
 * - TLS-ALPN-01 (RFC 8737): a TLS handshake on port 443 that offers only the
 *   "acme-tls/1" protocol for the name gets a self-signed certificate for
 *   that name carrying the acmeIdentifier extension.
 */
import * as tls from "node:tls";
import { respond, type AlpnResponder, type WebHandler } from "../web/web-listener.ts";

/** The one ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2). */
export const ACME_TLS_ALPN = "acme-tls/1";

/** RFC 8555 §8.3: the token is base64url; anything else is not ours. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

export const HTTP01_PREFIX = "/.well-known/acme-challenge/";

export class ChallengeResponses {
  private readonly http01 = new Map<string, string>();
  private readonly alpn = new Map<string, tls.SecureContext>();

  addHttp01(token: string, keyAuthorization: string): void {
    this.http01.set(token, keyAuthorization);
  }

  removeHttp01(token: string): void {
    this.http01.delete(token);
  }

  /** The key authorization for a request path, or undefined (→ 404). */
  http01Response(path: string): string | undefined {
    if (!path.startsWith(HTTP01_PREFIX)) return undefined;
    const token = path.slice(HTTP01_PREFIX.length);
    return TOKEN.test(token) ? this.http01.get(token) : undefined;
  }

  addTlsAlpn01(name: string, certPem: string | Buffer, keyPem: string | Buffer): void {
    this.alpn.set(name.toLowerCase(), tls.createSecureContext({ cert: certPem, key: keyPem, minVersion: "TLSv1.2" }));
  }

  removeTlsAlpn01(name: string): void {
    this.alpn.delete(name.toLowerCase());
  }

  /** The challenge certificate's context for a server name, if a TLS-ALPN-01 challenge for it is open. */
  tlsAlpn01Context(servername: string | undefined): tls.SecureContext | undefined {
    return servername ? this.alpn.get(servername.toLowerCase()) : undefined;
  }
}

/** ACME HTTP-01 (RFC 8555 §8.3): the key authorization for an open challenge's token. */
export function acmeHttp01Handler(challenges: ChallengeResponses): WebHandler {
  return (req, res) => {
    const answer = challenges.http01Response((req.url ?? "").split("?")[0]);
    if (answer === undefined || (req.method !== "GET" && req.method !== "HEAD")) return false;
    respond(res, 200, answer, { "content-type": "application/octet-stream" });
    return true;
  };
}

/** TLS-ALPN-01 (RFC 8737) for the HTTPS listener: the challenge certificate of a name. */
export function acmeTlsAlpnResponder(challenges: ChallengeResponses): AlpnResponder {
  return { protocol: ACME_TLS_ALPN, context: (servername) => challenges.tlsAlpn01Context(servername) };
}
