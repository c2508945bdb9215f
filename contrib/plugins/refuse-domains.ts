/**
 * A Petrel plugin: refuse mail whose envelope sender (MAIL FROM) is at one
 * of a list of domains, or below them.
 *
 *   plugins:
 *     - path: contrib/plugins/refuse-domains.ts
 *       options:
 *         domains: [spam.example, bulk.example]
 *         subdomains: true        # also news.bulk.example (default true)
 *
 * The reply is 550 5.7.1 with a generic text; the log line says which
 * domain matched. Bounces (the null sender) are never refused.
 */
import type { CheckFactory, CheckResult } from "../../src/policy/plugin-api.ts";

const refuseDomains: CheckFactory = (context, options) => {
  const { domains, subdomains } = readOptions(options);
  context.log.info({ domains: domains.size }, "refusing mail from the listed sender domains");

  const listed = (domain: string): string | undefined => {
    const labels = domain.toLowerCase().split(".");
    for (let i = 0; i < labels.length - 1; i++) {
      const candidate = labels.slice(i).join(".");
      if (domains.has(candidate)) return candidate;
      if (!subdomains) break;
    }
    return undefined;
  };

  return {
    name: "refuse-domains",
    open: () => ({
      mail(_session, from): CheckResult | undefined {
        if (from === null) return undefined;
        const match = listed(from.domain);
        if (match === undefined) return undefined;
        return {
          verdict: {
            action: "reject",
            reply: { code: 550, status: "5.7.1", lines: [`<${from.localPart}@${from.domain}>: Sender address rejected: access denied`] },
          },
          reason: `sender domain ${from.domain} is refused (listed: ${match})`,
        };
      },
    }),
  };
};

export default refuseDomains;

/** The options, checked: a mistake here stops Petrel's start-up with this message. */
function readOptions(options: unknown): { domains: Set<string>; subdomains: boolean } {
  const o = (options ?? {}) as { domains?: unknown; subdomains?: unknown };
  if (!Array.isArray(o.domains) || o.domains.length === 0 || !o.domains.every((d) => typeof d === "string" && /^[^\s@.]+(\.[^\s@.]+)+$/.test(d))) {
    throw new Error('options.domains must be a list of domain names such as ["spam.example"]');
  }
  if (o.subdomains !== undefined && typeof o.subdomains !== "boolean") throw new Error("options.subdomains must be true or false");
  return { domains: new Set(o.domains.map((d: string) => d.toLowerCase())), subdomains: o.subdomains ?? true };
}
