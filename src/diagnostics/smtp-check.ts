/**
 * `petrel check HOST[:PORT]`: look at any SMTP server the way a client
 * does, step by step, and say what is right and what is wrong in plain
 * words — DNS (the MX of a domain on port 25, else the host's A/AAAA),
 * connecting (refused, no answer, no route: explain.ts words it), the
 * greeting, the EHLO extensions before and after STARTTLS, the certificate,
 * AUTH (never in clear: RFC 4954 §4, RFC 8314), and optionally a login.
 *
 * Only the first MX host is probed, on up to three of its addresses (the
 * next only when one cannot be reached). Certificates are not required to
 * verify to get this far: they are looked at and judged instead.
 */
import { isIP } from "node:net";
import type { Resolver } from "../dns/resolver.ts";
import { explain } from "../client/explain.ts";
import { SmtpClientError, SmtpConnection } from "../client/smtp-connection.ts";
import { replyText } from "../smtp/reply.ts";
import { certificateFindings, peerCertificateFacts } from "./certificate.ts";
import { fail, info, ok, warn, worstSeverity, type Finding } from "./finding.ts";

export interface SmtpCheckTarget {
  readonly host: string;
  readonly port: number;
  /** TLS from the first byte (port 465), instead of STARTTLS. */
  readonly implicitTls: boolean;
}

export interface SmtpCheckOptions {
  readonly resolver: Resolver;
  readonly heloName: string;
  /** For connecting and for each reply. */
  readonly timeoutMs: number;
  /** Try logging in (only ever over TLS). */
  readonly login?: { readonly user: string; readonly password: string };
  /** An extra CA to trust when judging the certificate chain. */
  readonly ca?: string | Buffer;
  readonly now?: () => number;
}

export interface SmtpCheckReport {
  readonly host: string;
  readonly port: number;
  /** The host and address that answered, when one did. */
  readonly reached: { readonly host: string; readonly address: string } | null;
  readonly findings: readonly Finding[];
  readonly worst: "ok" | "warn" | "fail";
}

/** At most this many addresses of the host are tried. */
const MAX_ADDRESSES = 3;
const SUBMISSION_PORTS = new Set([587, 465]);

export async function checkSmtpServer(target: SmtpCheckTarget, options: SmtpCheckOptions): Promise<SmtpCheckReport> {
  const findings: Finding[] = [];
  const report = (reached: SmtpCheckReport["reached"]): SmtpCheckReport => ({
    host: target.host, port: target.port, reached, findings, worst: worstSeverity(findings),
  });
  const where = await addressesOf(target, options.resolver, findings);
  if (!where) return report(null);

  let connection: SmtpConnection | null = null;
  let address = "";
  const unreachable: Finding[] = [];
  for (const a of where.addresses.slice(0, MAX_ADDRESSES)) {
    try {
      connection = await SmtpConnection.connect({
        host: a, port: target.port,
        tls: target.implicitTls ? "implicit" : "none",
        ...(isIP(where.name) ? {} : { servername: where.name }),
        verifyCertificate: false,
        heloName: options.heloName,
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
        timeouts: { connect: options.timeoutMs, greeting: options.timeoutMs, command: options.timeoutMs },
      });
      address = a;
      break;
    } catch (err) {
      if (err instanceof SmtpClientError && (err.kind === "connect" || err.kind === "timeout") && err.phase === "connect") {
        unreachable.push(connectFailure(err, a));
        continue;
      }
      findings.push(...unreachable, fail(phaseCheck(err), explain(err)));
      return report({ host: where.name, address: a });
    }
  }
  if (!connection) {
    findings.push(...unreachable);
    return report(null);
  }
  // An address that could not be reached while another could: worth knowing, not fatal.
  findings.push(...unreachable.map((f) => (f.severity === "fail" ? warn(f.check, f.message, "if that address should take mail, open the port for it or remove it from the DNS") : f)));
  try {
    await probeSession(connection, { ...target, name: where.name, address }, options, findings);
  } finally {
    await connection.quit();
  }
  return report({ host: where.name, address });
}

/** Which addresses to connect to, with the DNS findings; null when there are none. */
async function addressesOf(target: SmtpCheckTarget, resolver: Resolver, findings: Finding[]): Promise<{ name: string; addresses: string[] } | null> {
  const { host } = target;
  if (isIP(host)) return { name: host, addresses: [host] };
  // RFC 6761 §6.3: localhost names this machine, whatever the DNS says.
  if (/(^|\.)localhost\.?$/i.test(host)) {
    findings.push(info("dns", `${host} is this machine: 127.0.0.1, ::1 (RFC 6761)`));
    return { name: host, addresses: ["127.0.0.1", "::1"] };
  }
  const noAnswer = "check this machine's network and resolver (/etc/resolv.conf, or --dns), then try again";
  if (target.port === 25) {
    const mx = await resolver.resolveMx(host);
    switch (mx.kind) {
      case "hosts": {
        const first = mx.hosts[0];
        if (mx.implicit) {
          findings.push(info("dns", `${host} has no MX record, so mail for it goes to its own address ${first.addresses.join(", ")} (RFC 5321 §5.1)`));
        } else {
          const list = mx.hosts.map((h) => `${h.preference} ${h.exchange}`).join(", ");
          findings.push(ok("dns", `${host}: MX ${list}; ${first.exchange} is ${first.addresses.join(", ")}`));
          if (mx.hosts.length > 1) findings.push(info("dns", `only ${first.exchange} is checked here; check the others too: ${mx.hosts.slice(1).map((h) => `petrel check ${h.exchange}`).join(", ")}`));
        }
        return { name: first.exchange, addresses: [...first.addresses] };
      }
      case "null-mx":
        findings.push(fail("dns", `${host} publishes a null MX ("0 ."): it accepts no mail at all (RFC 7505)`, "if it should receive mail, replace that MX record with one naming your mail server"));
        return null;
      case "permanent":
        findings.push(fail("dns", `${mx.reason}`, `check the spelling; if ${host} is yours, publish an MX record naming your mail server, and an A (and AAAA) record for that server`));
        return null;
      case "temporary":
        findings.push(fail("dns", `the DNS did not answer for ${host}: ${mx.reason}`, noAnswer));
        return null;
    }
  }
  const a = await resolver.resolveAddresses(host);
  switch (a.kind) {
    case "addresses":
      findings.push(ok("dns", `${host} is ${a.addresses.join(", ")}`));
      return { name: host, addresses: a.addresses };
    case "permanent":
      findings.push(fail("dns", a.reason, `check the spelling; if ${host} is yours, publish an A (and AAAA) record for it`));
      return null;
    case "temporary":
      findings.push(fail("dns", `the DNS did not answer for ${host}: ${a.reason}`, noAnswer));
      return null;
  }
}

const NO_ROUTE = new Set(["ENETUNREACH", "EHOSTUNREACH", "EADDRNOTAVAIL"]);

function connectFailure(err: SmtpClientError, address: string): Finding {
  if (isIP(address) === 6 && err.code !== undefined && NO_ROUTE.has(err.code)) {
    return info("connect", `${address}: this machine has no route to IPv6 addresses (${err.code}); the next address was tried`);
  }
  return fail("connect", explain(err));
}

function phaseCheck(err: unknown): string {
  if (!(err instanceof SmtpClientError)) return "connect";
  if (err.kind === "tls" || err.phase === "TLS" || err.phase === "STARTTLS") return "tls";
  if (err.phase === "greeting") return "greeting";
  if (err.phase === "EHLO" || err.phase === "HELO") return "ehlo";
  return "connect";
}

async function probeSession(
  c: SmtpConnection,
  at: SmtpCheckTarget & { name: string; address: string },
  options: SmtpCheckOptions,
  findings: Finding[],
): Promise<void> {
  const submission = SUBMISSION_PORTS.has(at.port);
  findings.push(ok("connect", `connected to ${at.address} port ${at.port}${at.implicitTls ? " with TLS from the first byte" : ""}`));
  findings.push(ok("greeting", replyText(c.greeting)));
  const ehlo = (when: string) => c.capabilities.esmtp
    ? ok("ehlo", `${when}${c.capabilities.raw.length > 0 ? c.capabilities.raw.join(", ") : "no extensions"}`)
    : warn("ehlo", "the server refused EHLO and took HELO: no extensions (no STARTTLS, SIZE, PIPELINING …)", "the server's software is very old or misconfigured: enable ESMTP");
  findings.push(ehlo(at.implicitTls ? "extensions: " : "extensions before TLS: "));

  if (!at.implicitTls) {
    if (c.capabilities.auth.length > 0) {
      findings.push(fail("auth", `AUTH ${c.capabilities.auth.join(" ")} is offered before TLS: a client may send its password in clear, readable on the way`,
        "offer AUTH only once TLS is up (Postfix: smtpd_tls_auth_only = yes; Petrel never offers it in clear)"));
    }
    if (!c.capabilities.starttls) {
      const words = "the server does not offer STARTTLS: everything sent to it, passwords included, travels unencrypted";
      findings.push(at.port === 25
        ? warn("tls", words, "configure a certificate and enable STARTTLS (Postfix: smtpd_tls_security_level = may)")
        : fail("tls", words, "configure a certificate and enable STARTTLS, or use implicit TLS on port 465"));
      if (options.login) findings.push(loginNotTried(c));
      return;
    }
    try {
      await c.startTls();
    } catch (err) {
      findings.push(fail("tls", explain(err)));
      return;
    }
  }
  const tls = c.tls!;
  findings.push(ok("tls", `${at.implicitTls ? "TLS" : "STARTTLS"}: ${tls.version}, ${tls.cipher}`));
  const cert = c.peerCertificate;
  if (cert) {
    findings.push(...certificateFindings(peerCertificateFacts(cert, tls.authorizationError), {
      name: at.name, now: (options.now ?? Date.now)(), strict: at.port !== 25,
    }));
  } else {
    findings.push(fail("certificate", "the server sent no certificate", "configure a certificate for TLS"));
  }
  if (!at.implicitTls) findings.push(ehlo("extensions after TLS: "));

  const mechanisms = c.capabilities.auth;
  if (mechanisms.length > 0) findings.push(ok("auth", `AUTH after TLS: ${mechanisms.join(" ")}`));
  else if (submission) {
    findings.push(warn("auth", "no AUTH offered after TLS: mail clients cannot log in here to send mail", "enable authentication on this port (Petrel: a submission listener and users)"));
  } else findings.push(info("auth", "no AUTH offered: usual for a server that receives mail (MX); clients log in on 587 or 465"));

  if (options.login) {
    try {
      await c.auth(options.login.user, options.login.password);
      findings.push(ok("login", `logged in as ${options.login.user}`));
    } catch (err) {
      findings.push(fail("login", explain(err)));
    }
  }
}

function loginNotTried(c: SmtpConnection): Finding {
  return fail("login", `not tried: the connection to ${c.remote.address} port ${c.remote.port} is not encrypted, and petrel check never sends a password in clear`,
    "enable STARTTLS on the server, or check its implicit-TLS port (465)");
}
