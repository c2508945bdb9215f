/**
 * `send()`: compose a message and submit it to one server — the TypeScript
 * API behind `petrel send`.
 *
 *   const r = await send({ server: "mail.example.com:587", user, password,
 *                          from: "me@example.com", to: "you@example.org", subject: "Hi", text: "…" });
 *   r.queueId; r.accepted; r.rejected
 *
 * Throws SmtpClientError (turn it into words with `explain()`): for network,
 * TLS and AUTH failures, a refused sender, a refused message, and when every
 * recipient was refused (phase "RCPT", `rejected` lists them). Recipients
 * refused while others were accepted are returned in `rejected`.
 */
import { hostname } from "node:os";
import * as net from "node:net";
import type { Reply } from "../smtp/reply.ts";
import { composeMessage, type MessageFields } from "./compose.ts";
import { SmtpClientError, SmtpConnection, type Timeouts } from "./smtp-connection.ts";

export interface SendOptions extends MessageFields {
  /** "host", "host:port", "[v6]:port". Port defaults to 465 with tls "implicit", else 587. */
  server: string;
  /** Default: "implicit" on port 465, else "starttls". */
  tls?: "starttls" | "implicit" | "none";
  user?: string;
  password?: string;
  /** Skip certificate verification (testing only). */
  insecure?: boolean;
  /** Extra trusted CA certificate (PEM). */
  ca?: string | Buffer;
  /** EHLO name; default this machine's host name. */
  heloName?: string;
  timeouts?: Partial<Timeouts>;
}

export interface SendResult {
  /** The id the server named in its reply ("queued as ID"), when it did. */
  queueId?: string;
  /** The server's reply to the message. */
  response: Reply;
  accepted: string[];
  rejected: { address: string; reply: Reply }[];
}

/** Split "host[:port]" / "[ipv6]:port" / bare IPv6; without a port, `defaultPort` (else 465 for implicit TLS, 587 otherwise). */
export function parseServer(server: string, tlsMode?: "starttls" | "implicit" | "none", defaultPort?: number): { host: string; port: number; tls: "starttls" | "implicit" | "none" } {
  let host = server.trim();
  let port: number | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (bracket) {
    host = bracket[1];
    if (bracket[2]) port = Number(bracket[2]);
  } else if (net.isIPv6(host)) {
    // bare IPv6: no port
  } else {
    const m = /^([^:]+):(\d+)$/.exec(host);
    if (m) {
      host = m[1];
      port = Number(m[2]);
    } else if (host.includes(":")) {
      throw new Error(`cannot read server "${server}": write HOST or HOST:PORT ([IPv6]:PORT)`);
    }
  }
  if (host === "") throw new Error("the server name is empty");
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new Error(`port ${port} is out of range (1-65535)`);
  }
  port ??= defaultPort;
  const mode = tlsMode ?? (port === 465 ? "implicit" : "starttls");
  return { host, port: port ?? (mode === "implicit" ? 465 : 587), tls: mode };
}

/** This machine's host name when it is a valid EHLO domain, else "localhost". */
export function defaultHeloName(): string {
  const h = hostname();
  return /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(h) ? h : "localhost";
}

export function queueIdOf(r: Reply): string | undefined {
  const m = /queued as ([^\s;,)]+)/i.exec(r.lines.join(" "));
  return m ? m[1] : undefined;
}

const nonAscii = (s: string) => /[^\x00-\x7f]/.test(s);

export async function send(options: SendOptions): Promise<SendResult> {
  const { host, port, tls } = parseServer(options.server, options.tls);
  const message = await composeMessage(options);
  const conn = await SmtpConnection.connect({
    host, port, tls,
    verifyCertificate: !options.insecure,
    ca: options.ca,
    heloName: options.heloName ?? defaultHeloName(),
    timeouts: options.timeouts,
  });
  try {
    if (options.user !== undefined) await conn.auth(options.user, options.password ?? "");
    const { from, to } = message.envelope;
    const smtputf8 = nonAscii(from) || to.some(nonAscii);
    if (smtputf8 && !conn.capabilities.smtputf8) {
      throw new SmtpClientError("protocol", "MAIL", "an address has non-ASCII characters but the server does not offer SMTPUTF8", { host, port });
    }
    const result = await conn.send({
      mailFrom: from,
      mailParams: { smtputf8 },
      recipients: to.map((address) => ({ address })),
      message: message.raw,
    });
    const accepted = result.recipients.filter((r) => r.reply.code >= 200 && r.reply.code < 300).map((r) => r.address);
    const rejected = result.recipients.filter((r) => r.reply.code >= 300);
    if (!result.final) {
      throw new SmtpClientError("reply", "RCPT", rejected.length === 1 ? `the server refused the recipient ${rejected[0].address}` : "the server refused every recipient", {
        reply: rejected[0].reply, host, port, rejected,
      });
    }
    if (result.final.code < 200 || result.final.code >= 300) {
      throw new SmtpClientError("reply", "DATA", "the server refused the message", { reply: result.final, host, port });
    }
    const queueId = queueIdOf(result.final);
    return { ...(queueId ? { queueId } : {}), response: result.final, accepted, rejected };
  } finally {
    await conn.quit();
  }
}
