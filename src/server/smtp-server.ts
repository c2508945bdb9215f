import * as net from "node:net";
import type * as tls from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Config, ListenerConfig } from "../config/schema.ts";
import { SASL_MECHANISMS } from "../sasl/mechanisms.ts";
import { TlsContextProvider } from "./tls-contexts.ts";
import type { CertKeyPaths } from "./tls-certificate-pair.ts";
import type { OcspResponder } from "./ocsp.ts";
import { Connection, type ConnectionSettings } from "./connection.ts";
import type { SessionFactory } from "./session-factory.ts";
import { networkMatcher } from "../mail/networks.ts";
import { bindListeners, type ListenerSocket } from "./listener-sockets.ts";
import type { EventSink } from "../events/petrel-event.ts";

/**
 * Petrel's listeners: every configured listener, the TLS certificates, and a
 * Connection per client, each served by what the injected session factory
 * gives it. No policy and no storage here: mta.ts composes those.
 * `start()` resolves once every listener is bound; `close()` shuts down
 * gracefully.
 */

export interface BoundListener {
  readonly role: ListenerConfig["role"];
  readonly address: string;
  readonly port: number;
}

export interface SmtpServerOptions {
  readonly log: Logger;
  /** A session handler (or a refusal) for each client. */
  readonly factory: SessionFactory;
  /** Delay past the soft error limit (Postfix smtpd_error_sleep_time, 1 s); tests pass 0. */
  readonly errorSleep?: number;
  /** Listeners bound beforehand (by `petrel serve`, before it gives up root); bound here when absent. */
  readonly sockets?: readonly ListenerSocket[];
  /** Certificates loaded beforehand (keys only root may read); loaded here when absent (and then closed with the server). */
  readonly tls?: TlsContextProvider;
  /** The OCSP response to staple for a certificate (DER), if one is known. */
  readonly ocspResponse?: OcspResponder;
  /** Told each connection, its TLS and its end (metrics). */
  readonly events?: EventSink;
  /** Log a "listening" line per listener (default); an SMTP worker serves listeners its primary announced. */
  readonly announce?: boolean;
}


export class SmtpServer {
  private current: Config;
  private isTrustedProxy: (peer: string) => boolean;
  readonly tls: TlsContextProvider;
  private readonly log: Logger;
  private readonly servers: net.Server[] = [];
  private readonly tlsSettings: tls.Server[] = [];
  /** The TLS provider is closed on shutdown only when this server made it. */
  private ownsTls = false;
  private readonly connections = new Set<Connection>();
  private readonly bound: BoundListener[] = [];
  private closing: Promise<void> | null = null;

  private constructor(config: Config, tlsProvider: TlsContextProvider, log: Logger) {
    this.current = config;
    this.isTrustedProxy = networkMatcher(config.proxyProtocol.trusted);
    this.tls = tlsProvider;
    this.log = log;
  }

  static async start(config: Config, options: SmtpServerOptions): Promise<SmtpServer> {
    const log = options.log;
    const tlsProvider = options.tls ?? await loadTlsContexts(config, log);
    const server = new SmtpServer(config, tlsProvider, log);
    server.ownsTls = options.tls === undefined;
    try {
      await server.listen(options);
    } catch (err) {
      await server.close();
      throw err;
    }
    return server;
  }

  /** The configuration new connections are served by. */
  get config(): Config {
    return this.current;
  }

  /** Where each listener is bound (port 0 in the config becomes the real port). */
  get listeners(): readonly BoundListener[] {
    return this.bound;
  }

  private async listen(options: SmtpServerOptions): Promise<void> {
    const c = this.config;
    const sockets = options.sockets ?? await bindListeners(c.listeners, c.limits.connections);
    for (const bound of sockets) {
      const l = bound.listener;
      const tlsServer = this.tls.createServer(l.tls, undefined, l.role);
      const ocsp = options.ocspResponse;
      if (ocsp) tlsServer.on("OCSPRequest", (certificate: Buffer, issuer: Buffer | null, cb: (err: Error | null, response: Buffer | null) => void) => cb(null, ocsp(certificate, issuer)));
      this.tlsSettings.push(tlsServer);
      const { server } = bound;
      bound.serve((socket) => {
        if (this.closing) {
          socket.destroy();
          return;
        }
        const conn = new Connection(socket, this.settingsFor(l, tlsServer, socket.remoteAddress ?? "", options), this.tls, options.factory, this.log);
        this.connections.add(conn);
        void conn.finished.then(() => this.connections.delete(conn));
        void conn.begin();
      });
      server.maxConnections = c.limits.connections + 100; // hard stop; the client-limits check answers 421 first
      server.on("error", (err) => this.log.error({ err }, "listener error"));
      this.servers.push(server);
      this.bound.push({ role: l.role, address: bound.address, port: bound.port });
      if (options.announce !== false) this.log.info({ role: l.role, address: bound.address, port: bound.port, proxyProtocol: l.proxyProtocol }, "listening");
    }
  }

  /**
   * A new connection's settings, from the configuration in force now: a
   * reload (`reconfigure`) reaches new connections; those in progress keep
   * the settings they started with.
   */
  private settingsFor(l: ListenerConfig, tlsServer: tls.Server, peer: string, options: SmtpServerOptions): ConnectionSettings {
    const c = this.config;
    const errorSleep = options.errorSleep ?? 1000;
    return {
      role: l.role,
      listenerTls: l.tls,
      tlsServer,
      expectProxyHeader: l.proxyProtocol && this.isTrustedProxy(peer),
      session: {
        hostname: c.hostname,
        banner: c.smtp.banner,
        limits: c.limits,
        bareNewline: c.smtp.bareNewline,
        errorDelay: errorSleep > 0 ? () => sleep(errorSleep) : undefined,
        hide: l.hide,
      },
      authMechanisms: SASL_MECHANISMS,
      commandTimeout: c.limits.commandTimeout,
      dataTimeout: c.limits.dataTimeout,
      sessionTimeout: c.limits.sessionTimeout,
      greetingDelay: c.smtp.greetingDelay,
      ...(options.events ? { events: options.events } : {}),
    };
  }

  /**
   * Serve new connections by `config` (a reload): limits, timeouts, the
   * banner, PROXY peers. The listeners stay bound where they are; changes to
   * them need a restart (the caller says so).
   */
  reconfigure(config: Config): void {
    this.current = config;
    this.isTrustedProxy = networkMatcher(config.proxyProtocol.trusted);
    for (const s of this.servers) s.maxConnections = config.limits.connections + 100;
  }

  /**
   * Graceful shutdown (SIGTERM): stop accepting, let transactions in flight
   * finish within limits.shutdownGrace, say 421 to everyone else. Resolves
   * when every connection has closed, so the spool can then be closed with
   * no commit cut in half.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const s of this.servers) s.close();
    for (const c of this.connections) c.drain();
    const all = Promise.all([...this.connections].map((c) => c.finished));
    const grace = sleep(this.config.limits.shutdownGrace, "timeout" as const, { ref: false });
    if ((await Promise.race([all.then(() => "done" as const), grace])) === "timeout") {
      this.log.warn({ connections: this.connections.size }, "shutdown grace period over; closing remaining connections");
      for (const c of this.connections) c.forceClose();
      await Promise.race([all, sleep(2000, undefined, { ref: false })]);
    }
    for (const s of this.tlsSettings) s.close();
    if (this.ownsTls) this.tls.close();
    this.log.info("stopped");
  }
}

/** The listeners' certificates from the config, reloads logged. */
export function loadTlsContexts(config: Config, log: Logger, fallback?: CertKeyPaths): Promise<TlsContextProvider> {
  return TlsContextProvider.fromConfig(config, {
    ...(fallback ? { fallback } : {}),
    onReload: (info) => log.info({ certificate: info }, "TLS certificate reloaded"),
    onError: (err) => log.error({ cert: err.certPath, reason: err.reason }, "TLS certificate reload failed; keeping the old one"),
  });
}
