/**
 * How the client reaches a server and how long it waits: the options of one
 * SMTP or LMTP session, shared by the socket layer (transport.ts) and the
 * session (smtp-connection.ts).
 */
import type { DaneAuthentication } from "./dane.ts";

/** none: never STARTTLS; opportunistic: STARTTLS when offered; starttls: STARTTLS or fail; implicit: TLS from the first byte (port 465). */
export type TlsMode = "none" | "opportunistic" | "starttls" | "implicit";

/** SMTP (RFC 5321: EHLO, one reply after the end of data) or LMTP (RFC 2033: LHLO, one reply per accepted recipient). */
export type MailProtocol = "smtp" | "lmtp";

/** Milliseconds the client waits at each stage. */
export interface Timeouts {
  connect: number;
  greeting: number;
  /** EHLO/LHLO, STARTTLS, AUTH, MAIL, RCPT, RSET, NOOP. */
  command: number;
  dataInit: number;
  /** Each write of message data that has to wait for the socket to drain. */
  dataBlock: number;
  /** The reply (LMTP: each reply) after the end of data. */
  dataTerm: number;
}

/** RFC 5321 §4.5.3.2 (greeting 5 min, MAIL/RCPT 5 min, DATA initiation 2 min, each data block 3 min, final reply 10 min); 30 s to connect, as Postfix. */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  connect: 30_000, greeting: 300_000, command: 300_000, dataInit: 120_000, dataBlock: 180_000, dataTerm: 600_000,
});

export interface ConnectOptions {
  /** IP or name to connect to (with `path`: only the name used in messages). */
  host: string;
  port: number;
  /** A UNIX-domain socket to connect to instead of host and port (LMTP to a local mail store). */
  path?: string;
  /** Default "smtp". */
  protocol?: MailProtocol;
  tls: TlsMode;
  /** SNI and the name the certificate must carry (default: host when it is a name, else the IP). */
  servername?: string;
  /** Reject certificates that do not verify (chain and name). */
  verifyCertificate: boolean;
  /**
   * Authenticate the server by these TLSA records (DANE, RFC 7672 §3) instead of by a
   * certificate authority: the handshake fails (kind "tls") when none matches. Only with TLS.
   */
  dane?: DaneAuthentication;
  /** Extra trusted CA certificate(s), in addition to the system's roots. */
  ca?: string | Buffer;
  /** Source IP for the connection. */
  localAddress?: string;
  /** Our name in EHLO / LHLO. */
  heloName: string;
  timeouts?: Partial<Timeouts>;
}

export interface TlsInfo {
  version: string;
  cipher: string;
  /** The certificate chains to a trusted authority and carries the server name (PKIX), whether or not that was required. */
  authorized: boolean;
  authorizationError?: string;
  /** How DANE authenticated the server, when `dane` was asked for (a failed check ends the connection). */
  dane?: "DANE-EE" | "DANE-TA";
}

/** The server as diagnostics name it: "host port 25", or the socket path. */
export function peerName(opts: Pick<ConnectOptions, "host" | "port" | "path">): string {
  return opts.path ?? `${opts.host} port ${opts.port}`;
}
