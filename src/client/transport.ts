/**
 * The client's sockets: TCP, UNIX-domain or implicit-TLS connect with a
 * timeout, the TLS options for a ConnectOptions (SNI, certificate checks,
 * extra CA), and the classification of socket errors into SmtpClientError
 * kinds.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { peerName, type ConnectOptions, type Timeouts, type TlsInfo } from "./connect-options.ts";
import { presentedChain, verifyDane } from "./dane.ts";
import { SmtpClientError } from "./smtp-error.ts";

/** Errors of the network or of the socket file (ENOENT, EACCES: a UNIX socket path that is missing or closed to us). */
export const NETWORK_ERRNOS = new Set([
  "ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "EAI_NONAME", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT",
  "EADDRNOTAVAIL", "EADDRINUSE", "ECONNRESET", "EPIPE", "ECONNABORTED", "EHOSTDOWN", "ENETDOWN", "EINVAL",
  "ENOENT", "EACCES", "ENOTSOCK",
]);

export const seconds = (ms: number) => `${ms / 1000} s`;

export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export function tlsOptions(opts: ConnectOptions): tls.ConnectionOptions {
  const name = opts.servername ?? (net.isIP(opts.host) ? undefined : opts.host);
  return {
    ...(name !== undefined && !net.isIP(name) ? { servername: name } : {}),
    // checkServerIdentity uses servername || host: give it the name even when it is an IP.
    ...(opts.servername !== undefined && net.isIP(opts.servername) ? { host: opts.servername } : {}),
    // With DANE the TLSA records authenticate the server, not a certificate authority (authenticate() below).
    rejectUnauthorized: opts.verifyCertificate && opts.dane === undefined,
    ...(opts.ca !== undefined ? { ca: [...tls.rootCertificates, opts.ca.toString()] } : {}),
    minVersion: "TLSv1.2",
  };
}

export function tlsInfo(s: tls.TLSSocket, dane?: TlsInfo["dane"]): TlsInfo {
  const err = s.authorizationError as unknown;
  const info: TlsInfo = { version: s.getProtocol() ?? "unknown", cipher: s.getCipher()?.name ?? "unknown", authorized: s.authorized };
  if (err) info.authorizationError = typeof err === "string" ? err : (errnoOf(err) ?? String((err as Error).message ?? err));
  if (dane) info.dane = dane;
  return info;
}

/**
 * The checks that follow a completed handshake: DANE (RFC 7672 §3) when asked for. The TLS
 * session, or the error that must end the connection (kind "tls", code "DANE_MISMATCH" and
 * the TLS-RPT result type in `daneFailure`).
 */
export function authenticate(s: tls.TLSSocket, opts: ConnectOptions, phase: string): TlsInfo | SmtpClientError {
  if (opts.dane === undefined) return tlsInfo(s);
  const verdict = verifyDane(presentedChain(s), opts.dane);
  if (verdict.ok) return tlsInfo(s, verdict.usage);
  return new SmtpClientError("tls", phase, `DANE authentication of ${peerName(opts)} failed: ${verdict.reason}`, {
    host: opts.host, port: opts.port, code: "DANE_MISMATCH", daneFailure: verdict.failure,
  });
}

/** TCP, UNIX-domain (`opts.path`) or implicit-TLS connect with a timeout; errors classified. `tls`: the session, with implicit TLS. */
export function openSocket(opts: ConnectOptions, t: Timeouts): Promise<{ socket: net.Socket; tls: TlsInfo | null }> {
  const { host, port } = opts;
  const implicit = opts.tls === "implicit";
  const peer = peerName(opts);
  return new Promise((resolve, reject) => {
    const base = opts.path !== undefined ? { path: opts.path } : { host, port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) };
    const socket: net.Socket = implicit ? tls.connect({ ...base, ...tlsOptions(opts) }) : net.connect(base);
    let tcpUp = false;
    let session: TlsInfo | null = null;
    const done = (err: SmtpClientError | null) => {
      clearTimeout(timer);
      socket.off("error", onError);
      if (err) {
        socket.on("error", () => {});
        socket.destroy();
        reject(err);
      } else resolve({ socket, tls: session });
    };
    const timer = setTimeout(() => {
      done(tcpUp
        ? new SmtpClientError("timeout", "TLS", `no TLS handshake with ${peer} within ${seconds(t.connect)}`, { host, port, timeoutMs: t.connect })
        : new SmtpClientError("timeout", "connect", `no answer from ${peer} within ${seconds(t.connect)}`, { host, port, timeoutMs: t.connect }));
    }, t.connect);
    const onError = (err: Error) => {
      const code = errnoOf(err);
      if (!tcpUp && (code === undefined || NETWORK_ERRNOS.has(code))) {
        done(new SmtpClientError("connect", "connect", `cannot connect to ${peer}: ${err.message}`, { host, port, code, cause: err }));
      } else if (tcpUp && (code === "ECONNRESET" || code === "EPIPE")) {
        done(new SmtpClientError("connect", "TLS", `${peer} closed the connection during the TLS handshake`, { host, port, code, cause: err }));
      } else {
        done(new SmtpClientError("tls", "TLS", `TLS with ${peer} failed: ${err.message}`, { host, port, code, cause: err }));
      }
    };
    socket.once("connect", () => {
      tcpUp = true;
      if (opts.path === undefined) socket.setNoDelay(true);
      if (!implicit) done(null);
    });
    if (implicit) {
      socket.once("secureConnect", () => {
        const checked = authenticate(socket as tls.TLSSocket, opts, "TLS");
        if (checked instanceof SmtpClientError) return done(checked);
        session = checked;
        done(null);
      });
    }
    socket.once("error", onError);
  });
}
