/**
 * Which MTA-STS policy applies to mail for a domain, as a sender decides it (RFC 8461 §5.1,
 * §3.3, §10.2):
 *
 * - The `_mta-sts.<domain>` TXT record names the current policy id. A cached policy with that
 *   id that has not passed its max_age is used as it is; a new id, or no usable cached policy,
 *   makes Petrel fetch the policy (sts-fetch.ts) and cache it (sts-cache.ts).
 * - When the TXT record is missing or cannot be read, or the fetch fails, an unexpired cached
 *   policy still applies: a policy is withdrawn only by publishing "mode: none" or by letting it
 *   expire, never by an attacker who blocks DNS or HTTPS.
 * - A policy in the second half of its max_age is fetched again in the background when it is
 *   used, so a domain Petrel keeps sending to never sees its policy lapse (§10.2).
 * - A failed fetch for an id is not tried again for `retryAfterMs` (concurrent deliveries
 *   share one fetch anyway).
 *
 * What is returned says how discovery went (`failure`), for TLS-RPT (RFC 8460 §4.3.2.2).
 */
import { resolvePolicy, validateMx } from "mailauth/lib/mta-sts.js";
import type { Resolver } from "../dns/resolver.ts";
import type { CachedPolicy, PolicyCache } from "./sts-cache.ts";
import { fetchPolicy, type FetchOptions, type StsFailure } from "./sts-fetch.ts";

export interface DiscoveryFailure {
  readonly resultType: StsFailure;
  readonly reason: string;
}

export type StsApplied =
  /** No policy applies: none published, "mode: none", or none could be had (`failure`). */
  | { readonly kind: "none"; readonly failure?: DiscoveryFailure }
  /** An enforce or testing policy; `failure` when a newer one could not be fetched. */
  | { readonly kind: "policy"; readonly policy: CachedPolicy; readonly failure?: DiscoveryFailure };

export interface StsPolicySource {
  policyFor(domain: string): Promise<StsApplied>;
}

export interface StsPoliciesOptions {
  readonly resolver: Pick<Resolver, "resolveTxt" | "resolveAddresses">;
  readonly cache: PolicyCache;
  readonly clock: { now(): number };
  /** HTTPS options of the fetch (extra CA and port for tests, timeout). */
  readonly fetch?: Omit<FetchOptions, "resolver">;
  /** Default 5 minutes. */
  readonly retryAfterMs?: number;
  readonly onError?: (message: string) => void;
}

type TxtId = { kind: "id"; id: string } | { kind: "none" } | { kind: "unknown"; reason: string };

export class StsPolicies implements StsPolicySource {
  readonly #o: StsPoliciesOptions;
  readonly #inFlight = new Map<string, Promise<StsApplied>>();
  readonly #refreshing = new Map<string, Promise<void>>();
  readonly #failed = new Map<string, { id: string; until: number; failure: DiscoveryFailure }>();

  constructor(options: StsPoliciesOptions) {
    this.#o = options;
  }

  policyFor(domain: string): Promise<StsApplied> {
    const d = domain.toLowerCase();
    let p = this.#inFlight.get(d);
    if (!p) {
      p = this.#decide(d).finally(() => this.#inFlight.delete(d));
      this.#inFlight.set(d, p);
    }
    return p;
  }

  /** Background refreshes in progress (tests wait for them; shutdown need not). */
  async settled(): Promise<void> {
    await Promise.all([...this.#refreshing.values()]);
  }

  async #decide(domain: string): Promise<StsApplied> {
    const now = this.#o.clock.now();
    const stored = await this.#o.cache.get(domain);
    const cached = stored && stored.expiresAt > now ? stored : undefined;
    const txt = await this.#policyId(domain);
    if (txt.kind !== "id") return applied(cached);
    if (cached && cached.id === txt.id) {
      if (cached.expiresAt - now < (cached.maxAgeSeconds * 1000) / 2) this.#refreshInBackground(domain, txt.id);
      return applied(cached);
    }
    const failedBefore = this.#failed.get(domain);
    if (failedBefore && failedBefore.id === txt.id && failedBefore.until > now) return applied(cached, failedBefore.failure);
    const fetched = await this.#fetchAndStore(domain, txt.id);
    if ("failure" in fetched) return applied(cached, fetched.failure);
    return applied(fetched.policy);
  }

  #refreshInBackground(domain: string, id: string): void {
    if (this.#refreshing.has(domain)) return;
    const p = this.#fetchAndStore(domain, id).then(() => undefined, () => undefined).finally(() => this.#refreshing.delete(domain));
    this.#refreshing.set(domain, p);
  }

  async #fetchAndStore(domain: string, id: string): Promise<{ policy: CachedPolicy } | { failure: DiscoveryFailure }> {
    const now = this.#o.clock.now();
    const r = await fetchPolicy(domain, { resolver: this.#o.resolver, ...this.#o.fetch });
    if (r.kind === "failed") {
      const failure = { resultType: r.failure, reason: r.reason };
      if (this.#failed.size >= 10_000) this.#failed.clear();
      this.#failed.set(domain, { id, until: now + (this.#o.retryAfterMs ?? 300_000), failure });
      this.#o.onError?.(`MTA-STS policy of ${domain} (id ${id}) not fetched: ${r.reason}`);
      return { failure };
    }
    this.#failed.delete(domain);
    const policy: CachedPolicy = { domain, id, ...r.policy, fetchedAt: now, expiresAt: now + r.policy.maxAgeSeconds * 1000 };
    try {
      await this.#o.cache.put(policy);
    } catch (err) {
      this.#o.onError?.(`MTA-STS policy of ${domain} not saved: ${(err as Error).message}`);
    }
    return { policy };
  }

  /** The TXT record's id (RFC 8461 §3.1), parsed by mailauth; several records are as good as none. */
  async #policyId(domain: string): Promise<TxtId> {
    try {
      const id = await resolvePolicy(domain, {
        strict: true,
        resolver: async (name: string) => {
          const r = await this.#o.resolver.resolveTxt(name);
          if (r.kind === "txt") {
            if (r.records.length === 0) throw Object.assign(new Error(`${name}: no TXT records`), { code: "ENODATA" });
            return r.records.map((t) => [t]);
          }
          throw Object.assign(new Error(r.reason), { code: r.kind === "permanent" ? "ENOTFOUND" : "ETEMPORARY" });
        },
      });
      return id ? { kind: "id", id } : { kind: "none" };
    } catch (err) {
      return { kind: "unknown", reason: (err as Error).message };
    }
  }
}

function applied(p: CachedPolicy | undefined, failure?: DiscoveryFailure): StsApplied {
  const f = failure ? { failure } : {};
  return p && p.mode !== "none" ? { kind: "policy", policy: p, ...f } : { kind: "none", ...f };
}

/** RFC 8461 §4.1: an MX host matches a pattern exactly, or "*.example.com" by exactly one more label on the left. */
export function mxMatches(policy: Pick<CachedPolicy, "mx">, host: string): boolean {
  return validateMx(host, { mode: "enforce", mx: [...policy.mx] }).valid;
}
