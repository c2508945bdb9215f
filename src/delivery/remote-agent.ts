import { isIP } from "node:net";
import type { Logger } from "pino";
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest } from "../queue/ports.ts";
import { domainOf } from "../mail/address.ts";
import type { Resolver } from "../dns/resolver.ts";
import { SmtpConnection, type ConnectOptions } from "../client/smtp-connection.ts";
import { ConnectionCache, type CacheTimer } from "../client/connection-cache.ts";
import { deferred, failed, sameOutcome, trouble } from "./outcome-policy.ts";
import { needsSmtpUtf8, transfer, type Preflight, type TransferTarget } from "./transfer.ts";
import { planHost, requireTlsDeferral, type Destination, type HostDecision, type HostPlan, type OutboundTls } from "./tls-requirements.ts";
import { failedReport, openedReport } from "./tls-session-report.ts";
import { countTraceFields } from "./loop-detection.ts";
import type { StsApplied, StsPolicySource } from "../mta-sts/sts-policies.ts";
import type { TlsSessionRecorder, TlsSessionResult } from "../tls-rpt/session-result.ts";

/**
 * The remote agent: carries one message to the recipients of one domain
 * the way RFC 5321 §5 says — MX lookup (or a configured relay), each host and
 * address in order, TLS as the receiver demands it (DANE, MTA-STS), the
 * message (REQUIRETLS) and the configuration allow (tls-requirements.ts),
 * the recipients in as few transactions as the server's LIMITS allow, a
 * verdict per recipient. It reports outcomes; the queue decides retries.
 * Every TLS session to a destination is told to TLS reporting. Idle
 * sessions are cached (client/connection-cache.ts) for the next message to
 * the same host under the same protection.
 */

export type { OutboundTls } from "./tls-requirements.ts";

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
  /** MTA-STS policies of the destinations (RFC 8461); absent: none are looked up. */
  readonly mtaSts?: StsPolicySource;
  /** DANE where the resolver vouches for TLSA records (RFC 7672); they are authentic only with dns.dnssec. */
  readonly dane?: boolean;
  /** Told about every TLS session to a destination with a policy, or none (TLS-RPT, RFC 8460). */
  readonly tlsReports?: TlsSessionRecorder;
  readonly log?: Logger;
  /** Injected for tests. */
  readonly connect?: (opts: ConnectOptions) => Promise<SmtpConnection>;
}

interface Candidate {
  /** The MX (or relay) host name, for diagnostics and certificate checks. */
  readonly name: string;
  readonly address: string;
  /** Its address records were DNSSEC-validated. */
  readonly authentic: boolean;
}

type Found = { hosts: Candidate[]; viaMx: boolean; mxAuthentic: boolean } | { outcome: DeliveryOutcome };

export class RemoteAgent implements DeliveryAgent {
  private readonly options: RemoteAgentOptions;
  private readonly cache: ConnectionCache;
  /** Sessions that have already authenticated (AUTH is once per session, RFC 4954 §4). */
  private readonly authenticated = new WeakSet<SmtpConnection>();
  /** Sessions whose server name and certificate were authenticated as RFC 8689 §4.2.1 asks. */
  private readonly verified = new WeakMap<SmtpConnection, boolean>();

  constructor(options: RemoteAgentOptions) {
    this.options = options;
    this.cache = new ConnectionCache({ idleMs: options.reuseMs, ...(options.timer ? { timer: options.timer } : {}) });
  }

  async deliver(request: DeliveryRequest): Promise<DeliveryOutcomes> {
    const domain = domainOf(request.recipients[0] ?? "");
    const found = await this.candidates(domain);
    if ("outcome" in found) return sameOutcome(request.recipients, found.outcome);
    const dest = await this.destination(domain, found, request);
    const outcomes = new Map<string, DeliveryOutcome>();
    let last: DeliveryOutcome = deferred("4.4.1", `no mail host for ${domain} could be reached`);
    const plans = new Map<string, Promise<HostDecision>>();
    for (const c of found.hosts) {
      const todo = request.recipients.filter((r) => !outcomes.has(r));
      if (todo.length === 0) break;
      // One decision per host name, whatever its number of addresses.
      let planned = plans.get(c.name);
      if (!planned) {
        planned = planHost(dest, c, { configured: this.options.tls, port: this.port, dane: this.options.dane === true, resolver: this.options.resolver });
        plans.set(c.name, planned);
        const decided = await planned;
        if (decided.kind === "skip" && decided.report && !dest.tlsRequiredNo) this.options.tlsReports?.record(decided.report);
      }
      const decision = await planned;
      if (decision.kind === "skip") {
        last = decision.outcome;
        continue;
      }
      const result = await transfer(this.cache, this.target(c, request, decision.plan, dest), request, todo);
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

  private get port(): number {
    return this.options.relay?.port ?? this.options.port;
  }

  // ---------------------------------------------------------------- hosts

  private async candidates(domain: string): Promise<Found> {
    const { relay, resolver } = this.options;
    const direct = (name: string, address: string) => ({ hosts: [{ name, address, authentic: false }], viaMx: false, mxAuthentic: false });
    if (relay) {
      const host = relay.host;
      if (isIP(host)) return direct(host, host);
      const r = await resolver.resolveAddresses(host);
      if (r.kind !== "addresses") {
        // A relay that does not resolve is our configuration's problem: keep the mail.
        return { outcome: deferred("4.4.3", `relay host ${host} not found: ${r.reason}`) };
      }
      return { hosts: r.addresses.map((address) => ({ name: host, address, authentic: false })), viaMx: false, mxAuthentic: false };
    }
    if (domain.startsWith("[") && domain.endsWith("]")) {
      // RFC 5321 §5.1: an address literal is the host itself.
      const lit = domain.slice(1, -1).replace(/^IPv6:/i, "");
      if (isIP(lit)) return direct(lit, lit);
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
        for (const h of mx.hosts) for (const address of h.addresses) hosts.push({ name: h.exchange, address, authentic: h.authentic === true });
        if (hosts.length === 0) return { outcome: deferred("4.4.3", `no addresses for the mail hosts of ${domain}`) };
        return { hosts, viaMx: true, mxAuthentic: mx.authentic === true };
      }
    }
  }

  /** What the destination demands (MTA-STS) and the message asks (REQUIRETLS, TLS-Required: No). */
  private async destination(domain: string, found: Exclude<Found, { outcome: DeliveryOutcome }>, request: DeliveryRequest): Promise<Destination> {
    const requireTls = request.envelope.requireTls;
    const policies = found.viaMx && (this.options.mtaSts || this.options.dane);
    // RFC 8689 §4.1: the header field is ignored when REQUIRETLS is present.
    const tlsRequiredNo = policies && !requireTls ? (await countTraceFields(request.body(), { maxHeaderBytes: 256 * 1024 }).catch(() => undefined))?.tlsRequiredNo === true : false;
    let sts: StsApplied | undefined;
    if (found.viaMx && this.options.mtaSts && !tlsRequiredNo) {
      try {
        sts = await this.options.mtaSts.policyFor(domain);
      } catch (err) {
        sts = { kind: "none", failure: { resultType: "sts-policy-fetch-error", reason: (err as Error).message } };
      }
    }
    return { domain, viaMx: found.viaMx, mxAuthentic: found.mxAuthentic, requireTls, tlsRequiredNo, ...(sts ? { sts } : {}) };
  }

  // ------------------------------------------------------------- sessions

  private target(c: Candidate, request: DeliveryRequest, plan: HostPlan, dest: Destination): TransferTarget {
    const o = this.options;
    const port = this.port;
    const where = `${c.name}[${c.address}]`;
    const report = (r: TlsSessionResult | undefined) => {
      if (r && !dest.tlsRequiredNo) o.tlsReports?.record(r);
    };
    return {
      // A session is reused only under the settings it was opened with.
      key: `smtp|${c.address}|${port}|${plan.key}|${c.name}|${o.auth?.user ?? ""}`,
      where,
      remoteMta: c.name,
      withoutDsn: "relayed",
      open: async () => {
        const localAddress = isIP(c.address) === 6 ? o.sourceAddress6 : o.sourceAddress;
        try {
          const session = await (o.connect ?? SmtpConnection.connect)({
            host: c.address,
            port,
            tls: plan.tls,
            servername: isIP(c.name) ? undefined : c.name,
            verifyCertificate: plan.verifyCertificate,
            ...(plan.dane ? { dane: plan.dane } : {}),
            ...(o.ca ? { ca: o.ca } : {}),
            ...(localAddress ? { localAddress } : {}),
            heloName: o.heloName,
            ...(o.timeouts ? { timeouts: o.timeouts } : {}),
          });
          report(openedReport(plan, session, { host: c.name, address: c.address }));
          this.verified.set(session, plan.dane !== undefined || (plan.verifyCertificate && plan.nameAuthentic));
          return session;
        } catch (err) {
          report(failedReport(plan, err, { host: c.name, address: c.address }));
          throw err;
        }
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
    if (env.requireTls) {
      // RFC 8689 §4.2.1: the session was authenticated when it opened (tls-requirements.ts made it so); the server must offer REQUIRETLS.
      if (session.tls === null || this.verified.get(session) !== true) {
        return { proceed: false, nextHost: true, outcome: requireTlsDeferral(`REQUIRETLS: the session with ${where} is not authenticated TLS`, c.name) };
      }
      if (!caps.requireTls) {
        return { proceed: false, nextHost: true, outcome: requireTlsDeferral(`REQUIRETLS: ${where} does not offer the REQUIRETLS extension, so the message may not go there (RFC 8689 section 4.2.1)`, c.name) };
      }
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
