/**
 * Serves the MTA-STS policy (RFC 8461 §3.2) at
 * https://mta-sts.<domain>/.well-known/mta-sts.txt for each local domain;
 * any other host or path is not ours (404). The policy is the same for
 * every domain: Petrel is their MX.
 */
import type { WebHandler } from "../web/web-listener.ts";
import { respond } from "../web/web-listener.ts";
import { POLICY_PATH } from "./policy.ts";

export interface PolicyHandlerOptions {
  /** The policy text. */
  readonly text: string;
  /** Whether `domain` is one of Petrel's local domains now. */
  readonly isLocalDomain: (domain: string) => Promise<boolean>;
}

export function mtaStsPolicyHandler(o: PolicyHandlerOptions): WebHandler {
  return async (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== POLICY_PATH) return false;
    const host = hostOf(req.headers.host);
    if (!host?.startsWith("mta-sts.")) return false;
    const domain = host.slice("mta-sts.".length);
    if (!(await o.isLocalDomain(domain))) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      respond(res, 405, "Method not allowed\n", { allow: "GET, HEAD" });
      return true;
    }
    // §3.2: media type text/plain; no redirects.
    respond(res, 200, o.text, { "cache-control": "max-age=300" });
    return true;
  };
}

/** "MTA-STS.Example.COM:443" → "mta-sts.example.com". */
function hostOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const h = header.trim().toLowerCase().replace(/:\d+$/, "");
  return h.endsWith(".") ? h.slice(0, -1) : h;
}
