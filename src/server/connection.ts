import { unmapIpv4 } from "../mail/networks.ts";
import type { ListenerRole } from "../mail/envelope.ts";
import type * as net from "node:net";
import * as tls from "node:tls";
import type { Logger } from "pino";
import { Session, type SessionOptions } from "../smtp/session.ts";
import { serializeReply, type Reply } from "../smtp/reply.ts";
import type { SessionHandler, SessionTransport } from "../smtp/session-handler.ts";
import type { ClientFacts } from "../policy/check.ts";
import { parseProxyHeader } from "./proxy-protocol.ts";
import type { SessionFactory } from "./session-factory.ts";
import type { TlsContextProvider } from "./tls-contexts.ts";
import type { EventSink } from "../events/petrel-event.ts";

/**
 * One client connection: the socket, TLS (implicit or STARTTLS), the PROXY
 * header, timeouts, and the protocol engine driven with the socket's bytes.
 * Decisions are the handler's, which the session factory gives for each
 * client (or a refusal instead of the greeting); protocol is the Session's.
 */

export interface ConnectionSettings {
  readonly role: ListenerRole;
  readonly listenerTls?: { readonly cert: string; readonly key: string };
  /** The listener's TLS settings (TlsContextProvider.createServer): where Node asks for OCSP staples. */
  readonly tlsServer?: tls.Server;
  /** Expect a PROXY header from this peer (listener has proxyProtocol and the peer is trusted). */
  readonly expectProxyHeader: boolean;
  readonly session: Omit<SessionOptions, "implicitTls" | "startTlsAvailable" | "authMechanisms" | "requireAuth">;
  readonly authMechanisms: readonly string[];
  readonly commandTimeout: number;
  readonly dataTimeout: number;
  readonly sessionTimeout: number;
  readonly greetingDelay: number;
  /** Told each connection, its TLS and its end (metrics). */
  readonly events?: EventSink;
}

/** Time allowed for the PROXY header and for a TLS handshake. */
const HANDSHAKE_TIMEOUT = 30_000;
/** A closing socket that the peer does not drain is destroyed after this. */
const CLOSE_LINGER = 5_000;
/** Stop reading when this much output is waiting for a client that does not read. */
const OUTPUT_HIGH_WATER = 1024 * 1024;

let nextConnectionId = 1;

export class Connection {
  readonly id = nextConnectionId++;
  private socket: net.Socket | tls.TLSSocket;
  private readonly raw: net.Socket;
  private readonly settings: ConnectionSettings;
  private readonly tlsProvider: TlsContextProvider;
  private readonly factory: SessionFactory;
  private log: Logger;
  private session: Session | null = null;
  private clientAddress: string;
  private clientPort: number;
  /** The listener's address and port the client reached (the PROXY header's destination when proxied). */
  private localAddress: string;
  private localPort: number;
  private opened = false;
  private closed = false;
  private draining = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readPaused = { engine: false, output: false };

  constructor(socket: net.Socket, settings: ConnectionSettings, tlsProvider: TlsContextProvider, factory: SessionFactory, log: Logger) {
    this.raw = socket;
    this.socket = socket;
    this.settings = settings;
    this.tlsProvider = tlsProvider;
    this.factory = factory;
    this.clientAddress = unmapIpv4(socket.remoteAddress ?? "unknown");
    this.clientPort = socket.remotePort ?? 0;
    this.localAddress = unmapIpv4(socket.localAddress ?? "");
    this.localPort = socket.localPort ?? 0;
    this.log = log;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    socket.setNoDelay(true);
    socket.on("error", (err) => this.log.debug({ err: err.message }, "socket error"));
    socket.on("close", () => this.onClose());
  }

  /** Resolves when the connection has closed. */
  get finished(): Promise<void> {
    return this.done;
  }

  async begin(): Promise<void> {
    try {
      if (this.settings.expectProxyHeader) {
        const ok = await this.readProxyHeader();
        if (!ok) return;
      }
      this.log = this.log.child({ conn: this.id, client: this.clientAddress });
      let implicitTls: { version: string; cipher: string } | null = null;
      if (this.settings.role === "submissions") {
        const info = await this.upgrade();
        if (!info) return;
        implicitTls = info;
      }
      const client: ClientFacts = {
        address: this.clientAddress,
        port: this.clientPort,
        localAddress: this.localAddress,
        localPort: this.localPort,
        role: this.settings.role,
        tls: implicitTls,
      };
      const opened = await this.factory.open(client, this.log);
      if (!("code" in opened)) this.opened = true;
      if (this.closed) {
        if (!("code" in opened)) await opened.close?.();
        return;
      }
      if ("code" in opened) {
        this.settings.events?.emit({ type: "connection", role: this.settings.role, client: this.clientAddress, refused: `${opened.code} ${opened.status ?? ""}`.trim() });
        return this.refuse(opened);
      }
      this.log.info({ port: this.clientPort, role: this.settings.role }, "connect");
      this.settings.events?.emit({ type: "connection", role: this.settings.role, client: this.clientAddress });
      if (implicitTls) this.settings.events?.emit({ type: "tls", direction: "in", role: this.settings.role, version: implicitTls.version });
      this.startSession(opened, implicitTls);
    } catch (err) {
      this.log.error({ err }, "connection setup failed");
      this.destroy();
    }
  }

  /** Graceful shutdown: let a transaction in flight finish, then say 421. */
  drain(): void {
    this.draining = true;
    if (!this.session) {
      this.destroy();
      return;
    }
    if (!this.session.inTransaction) this.session.shutdown("Service shutting down, closing connection");
  }

  /** The grace period is over: close now (an unfinished message was never acknowledged). */
  forceClose(): void {
    if (this.session) this.session.shutdown("Service shutting down, closing connection");
    const t = setTimeout(() => this.destroy(), 1000);
    t.unref();
  }

  private startSession(handler: SessionHandler, implicitTls: { version: string; cipher: string } | null): void {
    const s = this.settings;
    const transport: SessionTransport = {
      write: (data) => this.write(data),
      startTls: () => void this.startTls(),
      close: () => this.end(),
      pause: () => this.setPaused("engine", true),
      resume: () => this.setPaused("engine", false),
    };
    this.session = new Session({
      ...s.session,
      implicitTls,
      startTlsAvailable: implicitTls === null,
      authMechanisms: s.role === "mx" ? [] : s.authMechanisms,
      requireAuth: s.role !== "mx",
    }, handler, transport);
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    // Reading was paused while a PROXY header was parsed; a listener alone does not undo pause().
    this.socket.resume();
    this.armTimeout();
    this.timers.push(setTimeout(() => this.session?.shutdown("Error: session time limit exceeded", "4.4.2"), s.sessionTimeout));
    if (s.greetingDelay > 0) this.timers.push(setTimeout(() => this.session?.start(), s.greetingDelay));
    else this.session.start();
  }

  private onData(chunk: Buffer): void {
    const session = this.session;
    if (!session) return;
    session.receive(chunk);
    this.armTimeout();
  }

  private timeoutArmedOn: net.Socket | null = null;
  private timeoutMs = 0;

  /** RFC 5321 §4.5.3.2.7 server timeout; longer while message data streams in. */
  private armTimeout(): void {
    const session = this.session;
    if (!session) return;
    const ms = session.phase === "data" ? this.settings.dataTimeout : this.settings.commandTimeout;
    if (this.timeoutArmedOn !== this.socket) {
      this.timeoutArmedOn = this.socket;
      this.socket.on("timeout", () => {
        this.log.info({ phase: session.phase }, "timeout");
        session.shutdown("Error: timeout exceeded", "4.4.2");
      });
    } else if (ms === this.timeoutMs) {
      return; // the socket re-arms its idle timer on activity by itself
    }
    this.timeoutMs = ms;
    this.socket.setTimeout(ms);
  }

  private write(data: Buffer): void {
    if (this.closed || this.socket.destroyed) return;
    const ok = this.socket.write(data);
    if (!ok && this.socket.writableLength > OUTPUT_HIGH_WATER) {
      this.setPaused("output", true);
      this.socket.once("drain", () => this.setPaused("output", false));
    }
    if (this.draining && this.session && !this.session.inTransaction) {
      queueMicrotask(() => this.session?.shutdown("Service shutting down, closing connection"));
    }
  }

  private setPaused(reason: "engine" | "output", paused: boolean): void {
    this.readPaused[reason] = paused;
    if (this.readPaused.engine || this.readPaused.output) this.socket.pause();
    else this.socket.resume();
  }

  /** RFC 3207: the engine wrote "220 Ready to start TLS"; now the handshake. */
  private async startTls(): Promise<void> {
    // Plaintext bytes already read are dropped by the engine; stop reading
    // them here so anything further goes to the TLS layer (CVE-2011-0411).
    this.raw.removeAllListeners("data");
    this.raw.setTimeout(0);
    const info = await this.upgrade();
    if (!info || !this.session) return;
    this.settings.events?.emit({ type: "tls", direction: "in", role: this.settings.role, version: info.version });
    this.session.tlsEstablished(info);
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.armTimeout();
  }

  private upgrade(): Promise<{ version: string; cipher: string } | null> {
    return new Promise((resolve) => {
      let secure: tls.TLSSocket;
      try {
        secure = new tls.TLSSocket(this.raw, {
          isServer: true,
          ...this.tlsProvider.serverOptions(this.settings.listenerTls, this.settings.role),
          ...(this.settings.tlsServer ? { server: this.settings.tlsServer } : {}),
        });
      } catch (err) {
        this.log.error({ err }, "TLS setup failed");
        this.destroy();
        resolve(null);
        return;
      }
      this.socket = secure;
      const timer = setTimeout(() => {
        this.log.info("TLS handshake timeout");
        this.destroy();
        resolve(null);
      }, HANDSHAKE_TIMEOUT);
      secure.once("secure", () => {
        clearTimeout(timer);
        const version = secure.getProtocol() ?? "TLS";
        const cipher = secure.getCipher()?.name ?? "unknown";
        this.log.debug({ version, cipher, servername: (secure as { servername?: string }).servername }, "TLS established");
        resolve({ version, cipher });
      });
      secure.on("error", (err) => {
        clearTimeout(timer);
        this.log.info({ err: err.message }, "TLS error");
        this.destroy();
        resolve(null);
      });
      secure.on("close", () => {
        // Gone before or during the handshake: no timer may outlive the connection.
        clearTimeout(timer);
        resolve(null);
        this.onClose();
      });
    });
  }

  /** Read the PROXY v1/v2 header a trusted load balancer sends first. */
  private readProxyHeader(): Promise<boolean> {
    return new Promise((resolve) => {
      let buf: Buffer = Buffer.alloc(0);
      const timer = setTimeout(() => finish("timeout waiting for PROXY header"), HANDSHAKE_TIMEOUT);
      const onData = (chunk: Buffer) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        const r = parseProxyHeader(buf);
        if (r.status === "incomplete") return;
        if (r.status === "error") return finish(`bad PROXY header: ${r.reason}`);
        if (r.source) {
          this.clientAddress = unmapIpv4(r.source.address);
          this.clientPort = r.source.port;
        }
        if (r.destination) {
          this.localAddress = unmapIpv4(r.destination.address);
          this.localPort = r.destination.port;
        }
        const rest = buf.subarray(r.consumed);
        finish(null, rest);
      };
      const finish = (problem: string | null, rest?: Buffer) => {
        clearTimeout(timer);
        this.raw.removeListener("data", onData);
        this.raw.pause();
        if (problem) {
          this.log.warn({ proxy: this.clientAddress }, problem);
          this.destroy();
          resolve(false);
          return;
        }
        if (rest && rest.length > 0) this.raw.unshift(rest);
        resolve(true);
      };
      this.raw.on("data", onData);
    });
  }

  /** The factory refused the client: its reply instead of the greeting, then close (RFC 5321 §3.1). */
  private refuse(r: Reply): void {
    this.socket.end(serializeReply(r));
    this.lingerThenDestroy();
  }

  private end(): void {
    if (this.closed) return;
    this.socket.end();
    this.lingerThenDestroy();
  }

  private lingerThenDestroy(): void {
    const t = setTimeout(() => this.destroy(), CLOSE_LINGER);
    t.unref();
    this.timers.push(t);
  }

  private destroy(): void {
    this.socket.destroy();
    this.raw.destroy();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    if (this.session) void this.session.closed();
    if (this.opened) {
      this.log.info("disconnect");
      this.settings.events?.emit({ type: "disconnection", role: this.settings.role });
    }
    this.resolveDone();
  }
}

/** "::ffff:192.0.2.1" → "192.0.2.1": IPv4 clients on a dual-stack socket are IPv4 clients. */
