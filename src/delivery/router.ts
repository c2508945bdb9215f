import type { DeliveryAgent, DeliveryOutcome, DeliveryRequest } from "./outcome.ts";
import type { Transport } from "../queue/queue-state.ts";

/**
 * Which agent carries mail to an address, and which destination it counts
 * against for concurrency: local mailboxes go to the local agent (or to a
 * per-domain LMTP server), everything else to the remote agent.
 */

export interface Route {
  readonly transport: Transport;
  /** Concurrency and batching key: the domain (or LMTP server) mail goes to. */
  readonly destination: string;
  readonly agent: DeliveryAgent;
}

export interface Router {
  route(address: string, kind: "mailbox" | "forward"): Route;
}

export interface RouterSettings {
  readonly local: DeliveryAgent;
  readonly remote: DeliveryAgent;
  /** Per-domain LMTP agents (RFC 2033), e.g. Dovecot's. */
  readonly lmtp?: ReadonlyMap<string, { readonly agent: DeliveryAgent; readonly server: string }>;
}

export function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at === -1 ? "" : address.slice(at + 1).toLowerCase();
}

export function createRouter(s: RouterSettings): Router {
  return {
    route(address, kind) {
      const domain = domainOf(address);
      if (kind === "forward") return { transport: "remote", destination: domain, agent: s.remote };
      const lmtp = s.lmtp?.get(domain);
      if (lmtp) return { transport: "lmtp", destination: `lmtp:${lmtp.server}`, agent: lmtp.agent };
      return { transport: "local", destination: `local:${domain}`, agent: s.local };
    },
  };
}

/**
 * Until the outbound SMTP client exists, remote recipients wait in the
 * queue (deferred, retried, and bounced only when they expire) — never lost.
 */
export const remoteUnavailable: DeliveryAgent = {
  async deliver(request: DeliveryRequest): Promise<DeliveryOutcome[]> {
    return request.recipients.map(() => ({
      status: "deferred" as const,
      enhanced: "4.4.0",
      diagnostic: "remote delivery is not available in this version of Petrel; the message stays queued",
    }));
  },
};
