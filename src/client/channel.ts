/**
 * The transmission channel of one client session (RFC 5321 §2.3.7): the
 * socket (plain, then TLS after STARTTLS), the fuzzed reply parser, and the
 * count of replies the server still owes — one per command line sent, one
 * for the greeting, one per accepted recipient after an LMTP end of data.
 *
 * A reply that nobody asked for (the count is zero) means the server spoke
 * on its own: typically a `421` before it closes an idle connection (RFC
 * 5321 §3.8). It is never taken as the answer to the next command; the
 * channel fails instead, so a cached connection in that state is dropped
 * rather than reused. Every wait has a timeout; every failure is one
 * SmtpClientError, kept and given to every later caller.
 */
import type * as net from "node:net";
import * as tls from "node:tls";
import { replyText, type Reply } from "../smtp/reply.ts";
import { ReplyParser, ReplyParseError } from "../smtp/reply-parser.ts";
import { peerName, type ConnectOptions, type TlsInfo } from "./connect-options.ts";
import { SmtpClientError } from "./smtp-error.ts";
import { NETWORK_ERRNOS, authenticate, errnoOf, seconds, tlsOptions } from "./transport.ts";

export class Channel {
  readonly #opts: ConnectOptions;
  readonly #peer: string;
  #socket: net.Socket;
  #parser = new ReplyParser();
  #replies: Reply[] = [];
  /** Replies the server owes: the greeting at first. */
  #owed = 1;
  #waiter: { resolve: (r: Reply) => void; reject: (e: SmtpClientError) => void } | null = null;
  #failure: SmtpClientError | null = null;
  #phase = "greeting";
  #tls: TlsInfo | null;

  /** `session`: the TLS session of an implicit-TLS socket (authenticated by transport.ts). */
  constructor(opts: ConnectOptions, socket: net.Socket, session: TlsInfo | null = null) {
    this.#opts = opts;
    this.#peer = peerName(opts);
    this.#socket = socket;
    this.#tls = session;
    this.#attach(socket);
  }

  /** The failure that ended the channel, if any. */
  get failure(): SmtpClientError | null {
    return this.#failure;
  }
  get open(): boolean {
    return this.#failure === null && !this.#socket.destroyed;
  }
  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.#socket.remotePort;
  }
  get localAddress(): string | undefined {
    return this.#socket.localAddress;
  }
  /** The TLS session as it was negotiated, or null in plain text. */
  get tls(): TlsInfo | null {
    return this.#tls;
  }
  /** The peer's certificate and the chain it sent, or null in plain text. */
  get peerCertificate(): tls.DetailedPeerCertificate | null {
    if (!(this.#socket instanceof tls.TLSSocket)) return null;
    const cert = this.#socket.getPeerCertificate(true);
    return cert && Object.keys(cert).length > 0 ? cert : null;
  }

  /** The error for a command or reply the session could not accept. */
  error(kind: SmtpClientError["kind"], phase: string, message: string, reply?: Reply): SmtpClientError {
    return new SmtpClientError(kind, phase, message, { ...(reply ? { reply } : {}), host: this.#opts.host, port: this.#opts.port });
  }

  // -- writing ---------------------------------------------------------------------------------

  /** Write command lines in one write (a PIPELINING group, RFC 2920, goes as one packet); each owes a reply. */
  send(lines: readonly string[], phase: string): void {
    if (this.#failure) throw this.#failure;
    this.#phase = phase;
    this.#owed += lines.length;
    this.#socket.write(lines.map((l) => `${l}\r\n`).join(""));
  }

  /** Replies owed for what is not a command line: the end of data (SMTP one, LMTP one per accepted recipient). */
  owe(n: number): void {
    this.#owed += n;
  }

  command(line: string, phase: string, timeoutMs: number): Promise<Reply> {
    try {
      this.send([line], phase);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.read(phase, timeoutMs);
  }

  /** Write one block of message data, waiting for the socket to drain (back-pressure) at most `timeoutMs`. */
  writeData(b: Buffer, timeoutMs: number): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#socket.write(b)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const s = this.#socket;
      const cleanup = () => {
        clearTimeout(timer);
        s.off("drain", onDrain);
        s.off("close", onClose);
      };
      const onDrain = () => { cleanup(); resolve(); };
      const onClose = () => { cleanup(); reject(this.#failure ?? this.error("connect", "DATA", "connection closed during DATA")); };
      const timer = setTimeout(() => {
        cleanup();
        this.fail(new SmtpClientError("timeout", "DATA", `${this.#peer} stopped taking message data for ${seconds(timeoutMs)}`, { host: this.#opts.host, port: this.#opts.port, timeoutMs }));
        reject(this.#failure);
      }, timeoutMs);
      s.once("drain", onDrain);
      s.once("close", onClose);
    });
  }

  // -- reading ---------------------------------------------------------------------------------

  /** The next reply, waiting at most `timeoutMs`. */
  read(phase: string, timeoutMs: number): Promise<Reply> {
    this.#phase = phase;
    const queued = this.#replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new SmtpClientError("timeout", phase, `no reply from ${this.#peer} to ${phase} within ${seconds(timeoutMs)}`, { host: this.#opts.host, port: this.#opts.port, timeoutMs }));
      }, timeoutMs);
      this.#waiter = {
        resolve: (r) => { clearTimeout(timer); resolve(r); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  #onData = (chunk: Buffer): void => {
    let replies: Reply[];
    try {
      replies = this.#parser.push(chunk);
    } catch (err) {
      const msg = err instanceof ReplyParseError ? err.message : String(err);
      this.fail(this.error("protocol", this.#phase, `the server broke the SMTP protocol during ${this.#phase}: ${msg}`));
      return;
    }
    let unasked: Reply | undefined;
    for (const r of replies) {
      if (this.#owed === 0) {
        unasked = r;
        break;
      }
      this.#owed--;
      this.#replies.push(r);
    }
    if (this.#waiter && this.#replies.length > 0) {
      const w = this.#waiter;
      this.#waiter = null;
      w.resolve(this.#replies.shift()!);
    }
    // RFC 5321 §3.8: a server may send 421 and close on its own; nothing we send later may take it as its reply.
    if (unasked) {
      this.fail(unasked.code === 421
        ? this.error("reply", "idle", "the server ended the session while it was idle", unasked)
        : this.error("protocol", "idle", `the server sent a reply nobody asked for: ${replyText(unasked)}`, unasked));
    }
  };
  #onError = (err: Error): void => {
    const code = errnoOf(err);
    const kind = code === undefined || NETWORK_ERRNOS.has(code) ? "connect" : "tls";
    this.fail(new SmtpClientError(kind, this.#phase, `connection to ${this.#peer} failed during ${this.#phase}: ${err.message}`, { host: this.#opts.host, port: this.#opts.port, code, cause: err }));
  };
  #onClose = (): void => {
    this.fail(new SmtpClientError("connect", this.#phase, `${this.#peer} closed the connection during ${this.#phase}`, { host: this.#opts.host, port: this.#opts.port, code: "ECONNRESET" }));
  };

  #attach(s: net.Socket): void {
    s.on("data", this.#onData);
    s.on("error", this.#onError);
    s.on("close", this.#onClose);
  }
  #detach(s: net.Socket): void {
    s.off("data", this.#onData);
    s.off("error", this.#onError);
    s.off("close", this.#onClose);
  }

  // -- TLS and the end -------------------------------------------------------------------------

  /** TLS over the connection after the server's 220 to STARTTLS (RFC 3207). */
  async startTls(timeoutMs: number): Promise<void> {
    // RFC 3207 §4.2: anything the server sent after its 220 came in plain text: discard it.
    this.#parser.reset();
    this.#replies = [];
    this.#owed = 0;
    const plain = this.#socket;
    this.#detach(plain);
    plain.on("error", () => {}); // the TLS socket reports errors of the one it wraps
    const { host, port } = this.#opts;
    const peer = this.#peer;
    let session: TlsInfo | null = null;
    try {
      this.#socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ socket: plain, ...tlsOptions(this.#opts) });
        const timer = setTimeout(() => {
          s.destroy();
          reject(new SmtpClientError("timeout", "STARTTLS", `no TLS handshake with ${peer} within ${seconds(timeoutMs)}`, { host, port, timeoutMs }));
        }, timeoutMs);
        s.once("secureConnect", () => {
          clearTimeout(timer);
          s.off("error", onError);
          const checked = authenticate(s, this.#opts, "STARTTLS");
          if (checked instanceof SmtpClientError) {
            s.on("error", () => {});
            s.destroy();
            reject(checked);
            return;
          }
          session = checked;
          resolve(s);
        });
        const onError = (err: Error) => {
          clearTimeout(timer);
          s.on("error", () => {});
          s.destroy();
          reject(new SmtpClientError("tls", "STARTTLS", `TLS with ${peer} failed: ${err.message}`, { host, port, code: errnoOf(err), cause: err }));
        };
        s.once("error", onError);
      });
    } catch (err) {
      this.#failure ??= err as SmtpClientError;
      plain.destroy();
      throw err;
    }
    this.#tls = session;
    this.#attach(this.#socket);
  }

  /** End the channel with `err` (the first failure is kept): the socket is destroyed and a waiting read rejects. */
  fail(err: SmtpClientError): void {
    this.#failure ??= err;
    this.#socket.destroy();
    const w = this.#waiter;
    this.#waiter = null;
    w?.reject(this.#failure);
  }

  /** Drop the connection at once. */
  close(): void {
    this.#failure ??= this.error("connect", this.#phase, "the connection was closed");
    this.#detach(this.#socket);
    this.#socket.on("error", () => {});
    this.#socket.destroy();
    const w = this.#waiter;
    this.#waiter = null;
    w?.reject(this.#failure);
  }
}
