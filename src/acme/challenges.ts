/**
 * The answers to the ACME challenges in progress, shared between the ACME
 * service (which adds and removes them) and the listeners that serve them:
 *
 * - HTTP-01 (RFC 8555 §8.3): GET /.well-known/acme-challenge/<token> on port
 *   80 answers the key authorization, as text.
 * - TLS-ALPN-01 (RFC 8737): a TLS handshake on port 443 that offers only the
 *   "acme-tls/1" protocol for the name gets a self-signed certificate for
 *   that name carrying the acmeIdentifier extension.
 *
 * In a cluster the CA's request may reach any node (one name, a load
 * balancer), not only the one that ordered: an answer not held here is looked
 * up among those the nodes published (`share`), bounded in time, so that a
 * database that does not answer costs the CA a 404 (or the normal
 * certificate), not a hanging connection.
 */
import * as tls from "node:tls";
import { respond, type AlpnResponder, type WebHandler } from "../web/web-listener.ts";
import type { ChallengeKey, StoredChallenge } from "./acme-store.ts";

/** The one ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2). */
export const ACME_TLS_ALPN = "acme-tls/1";

/** RFC 8555 §8.3: the token is base64url; anything else is not ours. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

export const HTTP01_PREFIX = "/.well-known/acme-challenge/";

/** Where the answers other nodes published are found (the cluster's AcmeStore). */
export interface SharedChallenges {
  challenge(key: ChallengeKey): Promise<StoredChallenge | undefined>;
}

/** How long a lookup among the shared answers may take before the request is answered without it. */
export const SHARED_LOOKUP_TIMEOUT_MS = 2_000;

export class ChallengeResponses {
  private readonly http01 = new Map<string, string>();
  private readonly alpn = new Map<string, tls.SecureContext>();
  private shared: SharedChallenges | undefined;
  private onLookupError: (message: string) => void = () => undefined;
  private lookupTimeoutMs = SHARED_LOOKUP_TIMEOUT_MS;

  /** Answer, besides this node's own challenges, those published by other nodes. */
  share(shared: SharedChallenges, options: { onError?: (message: string) => void; timeoutMs?: number } = {}): void {
    this.shared = shared;
    if (options.onError) this.onLookupError = options.onError;
    if (options.timeoutMs !== undefined) this.lookupTimeoutMs = options.timeoutMs;
  }

  addHttp01(token: string, keyAuthorization: string): void {
    this.http01.set(token, keyAuthorization);
  }

  removeHttp01(token: string): void {
    this.http01.delete(token);
  }

  /** The key authorization for a request path, or undefined (→ 404). */
  async http01Response(path: string): Promise<string | undefined> {
    if (!path.startsWith(HTTP01_PREFIX)) return undefined;
    const token = path.slice(HTTP01_PREFIX.length);
    if (!TOKEN.test(token)) return undefined;
    const local = this.http01.get(token);
    if (local !== undefined) return local;
    const found = await this.lookup({ type: "http-01", token });
    return found?.type === "http-01" ? found.keyAuthorization : undefined;
  }

  addTlsAlpn01(name: string, certPem: string | Buffer, keyPem: string | Buffer): void {
    this.alpn.set(name.toLowerCase(), tls.createSecureContext({ cert: certPem, key: keyPem, minVersion: "TLSv1.2" }));
  }

  removeTlsAlpn01(name: string): void {
    this.alpn.delete(name.toLowerCase());
  }

  /** The challenge certificate's context for a server name, if a TLS-ALPN-01 challenge for it is open. */
  async tlsAlpn01Context(servername: string | undefined): Promise<tls.SecureContext | undefined> {
    if (!servername) return undefined;
    const name = servername.toLowerCase();
    const local = this.alpn.get(name);
    if (local) return local;
    const found = await this.lookup({ type: "tls-alpn-01", name });
    if (found?.type !== "tls-alpn-01") return undefined;
    try {
      return tls.createSecureContext({ cert: found.certPem, key: found.keyPem, minVersion: "TLSv1.2" });
    } catch (err) {
      this.onLookupError(`acme: the TLS-ALPN-01 certificate published for ${name} does not load: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** Among the published answers, bounded; a failure or a timeout is no answer. */
  private async lookup(key: ChallengeKey): Promise<StoredChallenge | undefined> {
    const shared = this.shared;
    if (!shared) return undefined;
    const what = key.type === "http-01" ? `HTTP-01 token ${key.token}` : `TLS-ALPN-01 name ${key.name}`;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.lookupTimeoutMs);
    });
    try {
      const found = await Promise.race([shared.challenge(key), timeout]);
      if (found === "timeout") {
        this.onLookupError(`acme: no answer from the database within ${this.lookupTimeoutMs} ms for the ${what}; answered as unknown`);
        return undefined;
      }
      return found;
    } catch (err) {
      this.onLookupError(`acme: cannot look up the ${what} in the database: ${(err as Error).message}; answered as unknown`);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** ACME HTTP-01 (RFC 8555 §8.3): the key authorization for an open challenge's token. */
export function acmeHttp01Handler(challenges: ChallengeResponses): WebHandler {
  return async (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const answer = await challenges.http01Response((req.url ?? "").split("?")[0]);
    if (answer === undefined) return false;
    respond(res, 200, answer, { "content-type": "application/octet-stream" });
    return true;
  };
}

/** TLS-ALPN-01 (RFC 8737) for the HTTPS listener: the challenge certificate of a name. */
export function acmeTlsAlpnResponder(challenges: ChallengeResponses): AlpnResponder {
  return { protocol: ACME_TLS_ALPN, context: (servername) => challenges.tlsAlpn01Context(servername) };
}
