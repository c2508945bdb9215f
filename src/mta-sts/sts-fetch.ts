/**
 * Fetching a domain's MTA-STS policy as a sender (RFC 8461 §3.3): GET
 * https://mta-sts.<domain>/.well-known/mta-sts.txt with a certificate that a trusted authority
 * issued for mta-sts.<domain>, TLS 1.2 or later, no redirects followed, only a 200 with a
 * text/plain body accepted, the body limited to 64 KiB and the whole exchange to a time limit.
 * The policy host is found through Petrel's own resolver, so tests (and operators) control
 * where it goes. The body is parsed by mailauth (RFC 8461 §3.2 grammar, strict).
 *
 * Failures are values, each with the TLS-RPT result type that reports it (RFC 8460 §4.3.2.2):
 * "sts-webpki-invalid" for a certificate that does not verify, "sts-policy-invalid" for a body
 * that is not a policy, "sts-policy-fetch-error" for everything else.
 */
import * as https from "node:https";
import * as tls from "node:tls";
import { isIP } from "node:net";
import { parsePolicy } from "mailauth/lib/mta-sts.js";
import type { Resolver } from "../dns/resolver.ts";
import { POLICY_PATH, policyHost, type MtaStsPolicy } from "./policy.ts";

/** RFC 8461 §3.3: a policy body is at most 64 KiB. */
export const MAX_POLICY_SIZE = 64 * 1024;

/** Another domain's policy as fetched (mx patterns lower case). */
export interface FetchedPolicy extends MtaStsPolicy {
  /** The policy as served, line by line (TLS-RPT's policy-string, RFC 8460 §4.4). */
  readonly lines: readonly string[];
}

export type StsFailure = "sts-policy-fetch-error" | "sts-policy-invalid" | "sts-webpki-invalid";

export type FetchResult =
  | { readonly kind: "policy"; readonly policy: FetchedPolicy }
  | { readonly kind: "failed"; readonly failure: StsFailure; readonly reason: string };

export interface FetchOptions {
  readonly resolver: Pick<Resolver, "resolveAddresses">;
  /** Extra trusted CA (tests); the system's roots are always trusted. */
  readonly ca?: string | Buffer;
  /** HTTPS port of the policy host: 443 (tests use another). */
  readonly port?: number;
  /** The whole fetch, ms (default 60000, RFC 8461 §3.3 suggests a minute). */
  readonly timeoutMs?: number;
}

/** TLS verification failures (Node's codes): the policy host's certificate is not valid. */
const WEBPKI_ERRORS = new Set([
  "ERR_TLS_CERT_ALTNAME_INVALID", "CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID", "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "CERT_UNTRUSTED", "CERT_REVOKED", "CERT_SIGNATURE_FAILURE", "INVALID_CA",
]);

export async function fetchPolicy(domain: string, options: FetchOptions): Promise<FetchResult> {
  const host = policyHost(domain);
  const found = await options.resolver.resolveAddresses(host);
  if (found.kind !== "addresses") return { kind: "failed", failure: "sts-policy-fetch-error", reason: `${host}: ${found.reason}` };
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let last: FetchResult | undefined;
  // Each address in turn while there is time; a definite answer (a body, a bad certificate, a bad status) ends it.
  for (const address of found.addresses) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const r = await get(host, address, options, left);
    if (r.kind === "body") return parse(r.body, host);
    last = { kind: "failed", failure: r.webpki ? "sts-webpki-invalid" : "sts-policy-fetch-error", reason: r.reason };
    if (!r.retry) return last;
  }
  return last ?? { kind: "failed", failure: "sts-policy-fetch-error", reason: `https://${host}${POLICY_PATH}: no time left within ${timeoutMs} ms` };
}

function parse(body: Buffer, host: string): FetchResult {
  const text = body.toString("utf8");
  try {
    const p = parsePolicy(text, { strict: true });
    return {
      kind: "policy",
      policy: { mode: p.mode, mx: p.mx ?? [], maxAgeSeconds: p.maxAge ?? 0, lines: text.split(/\r?\n/).filter((l) => l.trim() !== "") },
    };
  } catch (err) {
    return { kind: "failed", failure: "sts-policy-invalid", reason: `https://${host}${POLICY_PATH}: ${(err as Error).message}` };
  }
}

type Got = { kind: "body"; body: Buffer } | { kind: "error"; reason: string; webpki: boolean; retry: boolean };

function get(host: string, address: string, options: FetchOptions, timeoutMs: number): Promise<Got> {
  const url = `https://${host}${POLICY_PATH}`;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (g: Got) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(g);
    };
    const req = https.request({
      host: address,
      family: isIP(address) as 4 | 6,
      port: options.port ?? 443,
      path: POLICY_PATH,
      method: "GET",
      servername: host,
      headers: { host, accept: "text/plain", "user-agent": "Petrel MTA-STS" },
      minVersion: "TLSv1.2",
      rejectUnauthorized: true,
      ...(options.ca !== undefined ? { ca: [...tls.rootCertificates, options.ca.toString()] } : {}),
      // A fresh connection: one verified for another name is never reused.
      agent: false,
    }, (res) => {
      const status = res.statusCode ?? 0;
      // RFC 8461 §3.3: redirects are not followed; only 200 is a policy.
      if (status !== 200) return finish({ kind: "error", reason: `${url}: HTTP status ${status}${status >= 300 && status < 400 ? " (redirects are not followed)" : ""}`, webpki: false, retry: false });
      const type = (res.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
      if (type !== "text/plain") return finish({ kind: "error", reason: `${url}: Content-Type is "${res.headers["content-type"] ?? ""}", not text/plain`, webpki: false, retry: false });
      if (Number(res.headers["content-length"] ?? 0) > MAX_POLICY_SIZE) return finish({ kind: "error", reason: `${url}: larger than ${MAX_POLICY_SIZE} bytes`, webpki: false, retry: false });
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_POLICY_SIZE) return finish({ kind: "error", reason: `${url}: larger than ${MAX_POLICY_SIZE} bytes`, webpki: false, retry: false });
        chunks.push(c);
      });
      res.on("end", () => finish({ kind: "body", body: Buffer.concat(chunks) }));
      res.on("error", (err) => finish({ kind: "error", reason: `${url} from ${address}: ${err.message}`, webpki: false, retry: true }));
    });
    const timer = setTimeout(() => finish({ kind: "error", reason: `${url} from ${address}: no complete answer within ${timeoutMs} ms`, webpki: false, retry: true }), timeoutMs);
    req.on("error", (err: NodeJS.ErrnoException) => {
      const webpki = err.code !== undefined && WEBPKI_ERRORS.has(err.code);
      finish({ kind: "error", reason: `${url} from ${address}: ${webpki ? `certificate not valid (${err.code}): ` : ""}${err.message}`, webpki, retry: !webpki });
    });
    req.end();
  });
}
