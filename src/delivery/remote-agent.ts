import { isIP } from "node:net";
import type { Logger } from "pino";
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest } from "../queue/ports.ts";
import { domainOf } from "../mail/address.ts";
import type { Resolver } from "../dns/resolver.ts";
import { SmtpConnection, type ConnectOptions, type TlsMode } from "../client/smtp-connection.ts";
import { ConnectionCache, type CacheTimer } from "../client/connection-cache.ts";
import { deferred, failed, sameOutcome, trouble } from "./outcome-policy.ts";
import { needsSmtpUtf8, transfer, type Preflight, type TransferTarget } from "./transfer.ts";

/**
 * The remote agent: carries one message to the recipients of one domain
 * the way RFC 5321 §5 says — MX lookup (or a configured relay), each host and
 * address in order, STARTTLS per policy, the recipients in as few
 * transactions as the server's LIMITS allow, a verdict per recipient. It
 * reports outcomes; the queue decides retries. Idle sessions are cached
 * (client/connection-cache.ts) for the next message to the same host.
 */

export type OutboundTls = "opportunistic" | "required" | "implicit" | "none";

export interface RemoteAgentOptions {
  readonly resolver: Resolver;
  readonly heloName: string;
  /** Port of the MX hosts (25), or of the relay. */
  readonly port: number;
  readonly tls: OutboundTls;
  /** A fixed next hop instead of MX (smarthost / transport entry with a host). */
  readonly relay?: { readonly host: string; readonly port: number };
  /** AUTH toward the relay. */
  readonly auth?: { readonly user: string; readonly password: () => Promise<string> };
  readonly sourceAddress?: string;
  readonly sourceAddress6?: string;
  /** Keep idle connections this long for reuse (ms); 0 = never reuse. */
  readonly reuseMs: number;
  /** Schedules the end of idle connections (default: real timers). */
  readonly timer?: CacheTimer;
  readonly timeouts?: ConnectOptions["timeouts"];
  /** Extra CA for verifying peers (tests). */
  readonly ca?: string | Buffer;
  readonly log?: Logger;
  /** Injected for tests. */
  readonly connect?: (opts: ConnectOptions) => Promise<SmtpConnection>;
}

interface Candidate {
  /** The MX (or relay) host name, for diagnostics and certificate checks. */
  readonly name: string;
  readonly address: string;
}

export class RemoteAgent implements DeliveryAgent {
  private readonly options: RemoteAgentOptions;
  private readonly cache: ConnectionCache;
  /** Sessions that have already authenticated (AUTH is once per session, RFC 4954 §4). */
  private readonly authenticated = new WeakSet<SmtpConnection>();

  constructor(options: RemoteAgentOptions) {
    this.options = options;
    this.cache = new ConnectionCache({ idleMs: options.reuseMs, ...(options.timer ? { timer: options.timer } : {}) });
  }

  async deliver(request: DeliveryRequest): Promise<DeliveryOutcomes> {
    const domain = domainOf(request.recipients[0] ?? "");
    const found = await this.candidates(domain);
    if ("outcome" in found) return sameOutcome(request.recipients, found.outcome);
    const outcomes = new Map<string, DeliveryOutcome>();
    let last: DeliveryOutcome = deferred("4.4.1", `no mail host for ${domain} could be reached`);
    for (const c of found.hosts) {
      const todo = request.recipients.filter((r) => !outcomes.has(r));
      if (todo.length === 0) break;
      const result = await transfer(this.cache, this.target(c, request), request, todo);
      for (const [rcpt, outcome] of result.outcomes) outcomes.set(rcpt, outcome);
      if (result.undecided) last = result.undecided;
    }
    for (const r of request.recipients) if (!outcomes.has(r)) outcomes.set(r, last);
    return outcomes;
  }

  /** Close every cached connection (shutdown). */
  close(): Promise<void> {
    return this.cache.close();
  }

  // ---------------------------------------------------------------- hosts

  private async candidates(domain: string): Promise<{ hosts: Candidate[] } | { outcome: DeliveryOutcome }> {
    const { relay, resolver } = this.options;
    if (relay) {
      const host = relay.host;
      if (isIP(host)) return { hosts: [{ name: host, address: host }] };
      const r = await resolver.resolveAddresses(host);
      if (r.kind !== "addresses") {
        // A relay that does not resolve is our configuration's problem: keep the mail.
        return { outcome: deferred("4.4.3", `relay host ${host} not found: ${r.reason}`) };
      }
      return { hosts: r.addresses.map((address) => ({ name: host, address })) };
    }
    if (domain.startsWith("[") && domain.endsWith("]")) {
      // RFC 5321 §5.1: an address literal is the host itself.
      const lit = domain.slice(1, -1).replace(/^IPv6:/i, "");
      if (isIP(lit)) return { hosts: [{ name: lit, address: lit }] };
      return { outcome: failed("5.1.2", `bad destination address literal ${domain}`) };
    }
    const mx = await resolver.resolveMx(domain);
    switch (mx.kind) {
      case "null-mx":
        return { outcome: failed("5.1.10", `${domain} does not accept mail (null MX, RFC 7505)`) };
      case "permanent":
        return { outcome: failed("5.1.2", `Host or domain name not found: ${domain}: ${mx.reason}`) };
      case "temporary":
        return { outcome: deferred("4.4.3", `Host or domain name lookup for ${domain} failed temporarily: ${mx.reason}`) };
      default: {
        const hosts: Candidate[] = [];
        for (const h of mx.hosts) for (const address of h.addresses) hosts.push({ name: h.exchange, address });
        if (hosts.length === 0) return { outcome: deferred("4.4.3", `no addresses for the mail hosts of ${domain}`) };
        return { hosts };
      }
    }
  }

  // ------------------------------------------------------------- sessions

  private target(c: Candidate, request: DeliveryRequest): TransferTarget {
    const o = this.options;
    const port = o.relay?.port ?? o.port;
    const where = `${c.name}[${c.address}]`;
    return {
      // A session is reused only under the settings it was opened with.
      key: `smtp|${c.address}|${port}|${o.tls}|${c.name}|${o.auth?.user ?? ""}`,
      where,
      remoteMta: c.name,
      withoutDsn: "relayed",
      open: () => {
        const localAddress = isIP(c.address) === 6 ? o.sourceAddress6 : o.sourceAddress;
        const tlsMode: TlsMode = o.tls === "required" ? "starttls" : o.tls;
        return (o.connect ?? SmtpConnection.connect)({
          host: c.address,
          port,
          tls: tlsMode,
          servername: isIP(c.name) ? undefined : c.name,
          // Opportunistic TLS is unverified (RFC 7435); required and implicit TLS verify the name.
          verifyCertificate: o.tls === "required" || o.tls === "implicit",
          ...(o.ca ? { ca: o.ca } : {}),
          ...(localAddress ? { localAddress } : {}),
          heloName: o.heloName,
          ...(o.timeouts ? { timeouts: o.timeouts } : {}),
        });
      },
      prepare: (session) => this.prepare(session, request, c, where),
    };
  }

  /** Refusals no other host would change (RFC 6531 §3.2, RFC 1870 §6), REQUIRETLS (RFC 8689 §5), then AUTH. */
  private async prepare(session: SmtpConnection, request: DeliveryRequest, c: Candidate, where: string): Promise<Preflight> {
    const env = request.envelope;
    const caps = session.capabilities;
    if (needsSmtpUtf8(request) && !caps.smtputf8) {
      return { proceed: false, nextHost: false, outcome: failed("5.6.7", `${where} does not support SMTPUTF8, which this message needs`, c.name) };
    }
    if (env.size !== undefined && caps.size && env.size > caps.size) {
      return { proceed: false, nextHost: false, outcome: failed("5.3.4", `message size ${env.size} exceeds the size limit ${caps.size} of ${where}`, c.name) };
    }
    if (env.requireTls && (!session.tls?.authorized || !caps.requireTls)) {
      return { proceed: false, nextHost: true, outcome: deferred("4.7.10", `${where} cannot honour REQUIRETLS (verified TLS and the REQUIRETLS extension are needed)`, c.name) };
    }
    const auth = this.options.auth;
    if (auth && !this.authenticated.has(session)) {
      let password: string;
      try {
        password = await auth.password();
      } catch (err) {
        // Our own configuration cannot be read: keep the mail until it is fixed.
        return { proceed: false, nextHost: false, outcome: deferred("4.3.5", `cannot read the password for ${where}: ${(err as Error).message}`) };
      }
      try {
        await session.auth(auth.user, password);
      } catch (err) {
        return { proceed: false, ...trouble(err, { where, remoteMta: c.name }, request.queueId) };
      }
      this.authenticated.add(session);
    }
    return { proceed: true };
  }
}
