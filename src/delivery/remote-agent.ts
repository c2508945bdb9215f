import { isIP } from "node:net";
import type { Logger } from "pino";
import type { DeliveryAgent, DeliveryOutcome, DeliveryRequest } from "./outcome.ts";
import { domainOf } from "./router.ts";
import type { Resolver } from "../dns/resolver.ts";
import type { Reply } from "../smtp/reply.ts";
import { SmtpConnection, SmtpClientError, networkStatus, type ConnectOptions, type TlsMode } from "../client/smtp-connection.ts";

/**
 * The remote agent: carries one message to the recipients of one domain
 * the way RFC 5321 §5 says — MX lookup (or a configured relay), each host and
 * address in order, STARTTLS per policy, all recipients in one transaction,
 * a verdict per recipient. It reports outcomes; the queue decides retries.
 * Idle connections are kept briefly and reused for the next message to the
 * same host.
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

interface Pooled {
  readonly conn: SmtpConnection;
  timer: NodeJS.Timeout;
}

export class RemoteAgent implements DeliveryAgent {
  private readonly o: RemoteAgentOptions;
  private readonly pool = new Map<string, Pooled[]>();
  /** Connections that have already authenticated (AUTH is once per session, RFC 4954 §4). */
  private readonly authenticated = new WeakSet<SmtpConnection>();

  constructor(options: RemoteAgentOptions) {
    this.o = options;
  }

  async deliver(request: DeliveryRequest): Promise<DeliveryOutcome[]> {
    const domain = domainOf(request.recipients[0] ?? "");
    const needsUtf8 = request.envelope.smtputf8 || !isAscii(request.envelope.mailFrom) || request.recipients.some((r) => !isAscii(r));
    const found = await this.candidates(domain);
    if ("outcome" in found) return request.recipients.map(() => found.outcome);
    const pending = new Map<string, DeliveryOutcome>();
    let last: DeliveryOutcome = temp("4.4.1", `no mail host for ${domain} could be reached`);
    for (const c of found.hosts) {
      const todo = request.recipients.filter((r) => !pending.has(r));
      if (todo.length === 0) break;
      const attempt = await this.tryHost(c, request, todo, needsUtf8);
      if ("next" in attempt) {
        last = attempt.next;
        continue;
      }
      for (const [rcpt, outcome] of attempt.outcomes) pending.set(rcpt, outcome);
    }
    return request.recipients.map((r) => pending.get(r) ?? last);
  }

  /** Close every pooled connection (shutdown). */
  async close(): Promise<void> {
    const all = [...this.pool.values()].flat();
    this.pool.clear();
    await Promise.all(all.map((p) => {
      clearTimeout(p.timer);
      return p.conn.quit();
    }));
  }

  // ---------------------------------------------------------------- hosts

  private async candidates(domain: string): Promise<{ hosts: Candidate[] } | { outcome: DeliveryOutcome }> {
    if (this.o.relay) {
      const host = this.o.relay.host;
      if (isIP(host)) return { hosts: [{ name: host, address: host }] };
      const r = await this.o.resolver.resolveAddresses(host);
      if (r.kind !== "addresses") {
        // A relay that does not resolve is our configuration's problem: keep the mail.
        return { outcome: temp("4.4.3", `relay host ${host} not found: ${r.reason}`) };
      }
      return { hosts: this.order(r.addresses).map((address) => ({ name: host, address })) };
    }
    if (domain.startsWith("[") && domain.endsWith("]")) {
      // RFC 5321 §5.1: an address literal is the host itself.
      const lit = domain.slice(1, -1).replace(/^IPv6:/i, "");
      if (isIP(lit)) return { hosts: [{ name: lit, address: lit }] };
      return { outcome: perm("5.1.2", `bad destination address literal ${domain}`) };
    }
    const mx = await this.o.resolver.resolveMx(domain);
    switch (mx.kind) {
      case "null-mx":
        return { outcome: perm("5.1.10", `${domain} does not accept mail (null MX, RFC 7505)`) };
      case "permanent":
        return { outcome: perm("5.1.2", `Host or domain name not found: ${domain}: ${mx.reason}`) };
      case "temporary":
        return { outcome: temp("4.4.3", `Host or domain name lookup for ${domain} failed temporarily: ${mx.reason}`) };
      default: {
        const hosts: Candidate[] = [];
        for (const h of mx.hosts) for (const address of this.order(h.addresses)) hosts.push({ name: h.exchange, address });
        if (hosts.length === 0) return { outcome: temp("4.4.3", `no addresses for the mail hosts of ${domain}`) };
        return { hosts };
      }
    }
  }

  /** Without an IPv6 source address configured, IPv4 and IPv6 keep the resolver's order. */
  private order(addresses: readonly string[]): string[] {
    return [...addresses];
  }

  // ---------------------------------------------------------- transaction

  private async tryHost(
    c: Candidate, request: DeliveryRequest, recipients: string[], needsUtf8: boolean,
  ): Promise<{ outcomes: Map<string, DeliveryOutcome> } | { next: DeliveryOutcome }> {
    const where = `${c.name}[${c.address}]`;
    let conn: SmtpConnection;
    try {
      conn = await this.connection(c);
    } catch (err) {
      return { next: connectFailure(where, err) };
    }
    const env = request.envelope;
    const caps = conn.capabilities;
    const done = (outcomes: Map<string, DeliveryOutcome>, reusable: boolean) => {
      if (reusable) this.release(c, conn);
      else void conn.quit();
      return { outcomes };
    };
    // Refusals that no other host would change (RFC 6531 §3.2, RFC 1870 §6).
    if (needsUtf8 && !caps.smtputf8) {
      void conn.quit();
      return { outcomes: all(recipients, perm("5.6.7", `${where} does not support SMTPUTF8, which this message needs`, c.name)) };
    }
    const size = env.size;
    if (size !== undefined && caps.size && size > caps.size) {
      void conn.quit();
      return { outcomes: all(recipients, perm("5.3.4", `message size ${size} exceeds the size limit ${caps.size} of ${where}`, c.name)) };
    }
    // RFC 8689 §5: REQUIRETLS mail goes only over verified TLS to a server that offers it.
    if (env.requireTls && (!conn.tls?.authorized || !caps.requireTls)) {
      void conn.quit();
      return { next: temp("4.7.10", `${where} cannot honour REQUIRETLS (verified TLS and the REQUIRETLS extension are needed)`, c.name) };
    }
    try {
      if (this.o.auth && !this.authenticated.has(conn)) {
        await conn.auth(this.o.auth.user, await this.o.auth.password());
        this.authenticated.add(conn);
      }
      const result = await conn.send({
        mailFrom: env.mailFrom,
        mailParams: {
          ...(size !== undefined ? { size } : {}),
          ...(env.body ? { body: env.body } : {}),
          ...(needsUtf8 ? { smtputf8: true } : {}),
          ...(env.ret ? { ret: env.ret } : {}),
          ...(env.envid ? { envid: env.envid } : {}),
          ...(env.requireTls ? { requireTls: true } : {}),
        },
        recipients: recipients.map((address) => {
          const r = env.recipients.find((x) => x.address === address);
          return { address, ...(r?.notify ? { notify: [...r.notify] } : {}), ...(r?.orcpt ? { orcpt: r.orcpt } : {}) };
        }),
        message: () => request.body(),
      });
      const outcomes = new Map<string, DeliveryOutcome>();
      for (const r of result.recipients) {
        if (r.reply.code >= 300 || !result.final) {
          outcomes.set(r.address, fromReply(r.reply, c.name));
        } else {
          outcomes.set(r.address, result.final.code < 300
            ? { status: "delivered", detail: `${where} said: ${text(result.final)}` }
            : fromReply(result.final, c.name));
        }
      }
      return done(outcomes, conn.usable);
    } catch (err) {
      void conn.quit();
      if (err instanceof SmtpClientError && err.kind === "auth") {
        // Our credentials for a relay are wrong: keep the mail until they are fixed (as Postfix does).
        return { next: temp("4.7.0", `authentication to ${where} failed: ${err.reply ? text(err.reply) : err.message}`, c.name) };
      }
      if (err instanceof SmtpClientError && err.reply) {
        const o = fromReply(err.reply, c.name);
        // A permanent refusal of the sender or the message applies at every MX.
        if (o.status === "failed") return { outcomes: all(recipients, o) };
        return { next: o };
      }
      return { next: connectFailure(where, err) };
    }
  }

  private key(c: Candidate): string {
    return `${c.address}|${this.o.relay?.port ?? this.o.port}|${this.o.tls}|${c.name}`;
  }

  private async connection(c: Candidate): Promise<SmtpConnection> {
    const pooled = this.pool.get(this.key(c));
    while (pooled && pooled.length > 0) {
      const p = pooled.pop()!;
      clearTimeout(p.timer);
      if (p.conn.usable) {
        try {
          await p.conn.rset();
          return p.conn;
        } catch {
          p.conn.close();
        }
      }
    }
    const v6 = isIP(c.address) === 6;
    const localAddress = v6 ? this.o.sourceAddress6 : this.o.sourceAddress;
    const tlsMode: TlsMode = this.o.tls === "required" ? "starttls" : this.o.tls;
    return (this.o.connect ?? SmtpConnection.connect)({
      host: c.address,
      port: this.o.relay?.port ?? this.o.port,
      tls: tlsMode,
      servername: isIP(c.name) ? undefined : c.name,
      // Opportunistic TLS is unverified (RFC 7435); required and implicit TLS verify the name.
      verifyCertificate: this.o.tls === "required" || this.o.tls === "implicit",
      ...(this.o.ca ? { ca: this.o.ca } : {}),
      ...(localAddress ? { localAddress } : {}),
      heloName: this.o.heloName,
      ...(this.o.timeouts ? { timeouts: this.o.timeouts } : {}),
    });
  }

  private release(c: Candidate, conn: SmtpConnection): void {
    if (this.o.reuseMs <= 0 || !conn.usable) {
      void conn.quit();
      return;
    }
    const key = this.key(c);
    let list = this.pool.get(key);
    if (!list) this.pool.set(key, (list = []));
    const entry: Pooled = {
      conn,
      timer: setTimeout(() => {
        const l = this.pool.get(key);
        const i = l?.indexOf(entry) ?? -1;
        if (l && i >= 0) l.splice(i, 1);
        void conn.quit();
      }, this.o.reuseMs),
    };
    entry.timer.unref();
    list.push(entry);
  }
}

function isAscii(s: string): boolean {
  return !/[^\x00-\x7f]/.test(s);
}

function temp(enhanced: string, diagnostic: string, remoteMta?: string): DeliveryOutcome {
  return { status: "deferred", enhanced, diagnostic, ...(remoteMta ? { remoteMta } : {}) };
}

function perm(enhanced: string, diagnostic: string, remoteMta?: string): DeliveryOutcome {
  return { status: "failed", enhanced, diagnostic, ...(remoteMta ? { remoteMta } : {}) };
}

function all(recipients: readonly string[], o: DeliveryOutcome): Map<string, DeliveryOutcome> {
  return new Map(recipients.map((r) => [r, o]));
}

function text(r: Reply): string {
  return `${r.code} ${r.status ? r.status + " " : ""}${r.lines.join(" ")}`;
}

/**
 * The remote server's own reply is the diagnostic (a DSN's "Diagnostic-Code:
 * smtp; 550 5.1.1 …", RFC 3464 §2.3.6); the host is the Remote-MTA. Where and
 * when it was said goes to the log.
 */
function fromReply(r: Reply, remoteMta: string): DeliveryOutcome {
  const diagnostic = text(r);
  const cls = r.code >= 500 ? "5" : "4";
  const enhanced = r.status && r.status.startsWith(cls) ? r.status : `${cls}.0.0`;
  return r.code >= 500 ? perm(enhanced, diagnostic, remoteMta) : temp(enhanced, diagnostic, remoteMta);
}

function connectFailure(where: string, err: unknown): DeliveryOutcome {
  if (err instanceof SmtpClientError) {
    if (err.reply) return fromReply(err.reply, where);
    const why = err.kind === "timeout" ? "timed out" : err.kind === "tls" ? `TLS failed: ${err.message}` : err.code ?? err.message;
    // RFC 3463: 4.4.1 no answer from host, 4.4.2 bad connection, 4.7.5 TLS (cryptographic) failure.
    return temp(networkStatus(err) ?? (err.kind === "tls" ? "4.7.5" : "4.4.2"), `connect to ${where}: ${why}`);
  }
  return temp("4.4.2", `connect to ${where}: ${String(err)}`);
}
