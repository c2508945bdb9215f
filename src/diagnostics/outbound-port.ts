/**
 * `petrel doctor`, the classic: can this machine reach other mail servers on
 * port 25? Home connections and most cloud providers drop outgoing port 25
 * (spam from infected or rented machines); then every remote delivery
 * defers for days and bounces. A connection to a well-known MX (or the
 * configured smarthost, or --probe) that gets no answer says so.
 */
import { isIP } from "node:net";
import { explain } from "../client/explain.ts";
import { SmtpClientError, SmtpConnection } from "../client/smtp-connection.ts";
import type { Config } from "../config/schema.ts";
import type { Resolver } from "../dns/resolver.ts";
import { hostPort } from "../server/listener-sockets.ts";
import { replyText } from "../smtp/reply.ts";
import { fail, info, ok, warn, type Finding } from "./finding.ts";

/** Whose MX is asked when nothing else says where to probe: one that always answers on port 25. */
export const DEFAULT_PROBE_DOMAIN = "gmail.com";

export interface OutboundProbeOptions {
  readonly resolver: Resolver;
  /** --probe HOST[:PORT]. */
  readonly probe?: { readonly host: string; readonly port: number };
  readonly heloName: string;
  readonly timeoutMs: number;
}

export async function outboundPort(config: Config, options: OutboundProbeOptions): Promise<Finding[]> {
  const check = "outbound";
  const out: Finding[] = [];
  const smarthost = config.transport.find((t) => t.domains.includes("*") && t.type === "smtp" && t.host !== undefined);
  let target: { host: string; port: number; what: string };
  if (options.probe) target = { ...options.probe, what: "the probe host" };
  else if (smarthost) {
    target = { host: smarthost.host!, port: smarthost.port ?? 25, what: "the smarthost" };
    out.push(info(check, `all mail to other domains goes through the smarthost ${hostPort(target.host, target.port)}: port 25 toward MX hosts is not needed`));
  } else {
    const mx = await options.resolver.resolveMx(DEFAULT_PROBE_DOMAIN);
    if (mx.kind !== "hosts") {
      out.push(warn(check, `cannot test outbound port 25: the MX of ${DEFAULT_PROBE_DOMAIN} could not be looked up (${"reason" in mx ? mx.reason : mx.kind})`, "check the resolver (dns.servers), or give a mail server to try: petrel doctor --probe HOST"));
      return out;
    }
    target = { host: mx.hosts[0].exchange, port: config.outbound.port, what: `an MX of ${DEFAULT_PROBE_DOMAIN}` };
  }
  const addresses = isIP(target.host) ? [target.host] : await addressesOf(options.resolver, target.host);
  if (typeof addresses === "string") {
    out.push(warn(check, `cannot test outbound port ${target.port}: ${addresses}`, "give a mail server to try: petrel doctor --probe HOST"));
    return out;
  }
  const source = (address: string) => {
    const s = isIP(address) === 6 ? config.outbound.sourceAddress6 : config.outbound.sourceAddress;
    return s !== undefined ? { localAddress: s } : {};
  };
  let last: unknown;
  for (const address of addresses.slice(0, 2)) {
    try {
      const c = await SmtpConnection.connect({
        host: address, port: target.port, tls: "none", verifyCertificate: false, heloName: options.heloName, ...source(address),
        timeouts: { connect: options.timeoutMs, greeting: options.timeoutMs, command: options.timeoutMs },
      });
      const greeting = replyText(c.greeting);
      await c.quit();
      out.push(ok(check, `outbound port ${target.port} is open: ${target.what} ${target.host} (${address}) answered "${greeting}"`));
      return out;
    } catch (err) {
      last = err;
      // An address this machine has no route to (IPv6 on an IPv4-only network): try the next.
      if (err instanceof SmtpClientError && err.phase === "connect" && (err.code === "ENETUNREACH" || err.code === "EHOSTUNREACH" || err.code === "EADDRNOTAVAIL")) continue;
      break;
    }
  }
  out.push(probeFailure(last, target));
  return out;
}

function probeFailure(err: unknown, target: { host: string; port: number; what: string }): Finding {
  const check = "outbound";
  const at = `${target.what} ${target.host} port ${target.port}`;
  if (err instanceof SmtpClientError && err.kind === "timeout" && err.phase === "connect") {
    return fail(check, `no answer from ${at} within ${(err.timeoutMs ?? 0) / 1000} s: your provider probably blocks outbound port ${target.port}, so mail to other servers cannot leave this machine`,
      "ask the provider to open outbound port 25 (many cloud providers do on request), or send through a smarthost: transport: [{ domains: [\"*\"], type: smtp, host: SMARTHOST, port: 587, tls: required, auth: { user: U, passwordFile: F } }]");
  }
  if (err instanceof SmtpClientError && err.code === "ECONNREFUSED") {
    return warn(check, `${at} refused the connection: a firewall on the way rejects port ${target.port}, or that host is down`, "try another mail server: petrel doctor --probe HOST");
  }
  if (err instanceof SmtpClientError && err.phase === "greeting") {
    return warn(check, `connected to ${at}, but it did not greet: something on the way (an antivirus or a transparent proxy) may intercept port ${target.port}`, "check this machine's and the network's firewall; try petrel check HOST for details");
  }
  return warn(check, `${at}: ${explain(err)}`, "try another mail server: petrel doctor --probe HOST");
}

/** IPv4 first: a machine without IPv6 reaches the probe over IPv4, and blocking shows the same on both. */
async function addressesOf(resolver: Resolver, host: string): Promise<string[] | string> {
  const r = await resolver.resolveAddresses(host);
  if (r.kind !== "addresses") return `${host} could not be looked up (${r.reason})`;
  return [...r.addresses.filter((a) => isIP(a) === 4), ...r.addresses.filter((a) => isIP(a) === 6)];
}
