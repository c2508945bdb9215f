import type { DeliveryAgent, Router, Transport } from "../queue/ports.ts";
import { domainOf } from "../mail/address.ts";

/**
 * Which agent carries mail to an address, and which destination it counts
 * against for concurrency: local mailboxes go to the local agent (or to a
 * per-domain LMTP server), everything else to the remote agent.
 */


export interface ConfiguredRoute {
  /** Recipient domains, or "*" for all mail that is not local (a smarthost). */
  readonly domains: readonly string[];
  readonly transport: Transport;
  /** Concurrency key; "" means "the recipient's domain" (MX delivery with its own policy). */
  readonly destination: string;
  readonly agent: DeliveryAgent;
}

export interface RouterSettings {
  /** Maildir delivery for local mailboxes. */
  readonly local: DeliveryAgent;
  /** SMTP to the domain's MX hosts. */
  readonly remote: DeliveryAgent;
  /** The transport map, first match wins; "*" applies only to non-local mail. */
  readonly routes?: readonly ConfiguredRoute[];
}

export function createRouter(s: RouterSettings): Router {
  const routes = s.routes ?? [];
  return {
    route(address, kind) {
      const domain = domainOf(address);
      const entry = routes.find((r) => r.domains.includes(domain)) ?? (kind === "forward" ? routes.find((r) => r.domains.includes("*")) : undefined);
      if (entry) return { transport: entry.transport, destination: entry.destination || domain, agent: entry.agent };
      if (kind === "forward") return { transport: "remote", destination: domain, agent: s.remote };
      return { transport: "local", destination: `local:${domain}`, agent: s.local };
    },
  };
}
