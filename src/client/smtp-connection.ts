/**
 * Petrel's SMTP client session (RFC 5321 client side), used by the remote
 * delivery agent and by `petrel send`: connect (plain or implicit TLS), read
 * the greeting, EHLO (HELO when EHLO is unknown), STARTTLS per the TLS mode
 * (RFC 3207: EHLO again afterwards), AUTH, and mail transactions with
 * PIPELINING (RFC 2920) and a streamed, dot-stuffed DATA.
 *
 *   const c = await SmtpConnection.connect({ host, port: 25, tls: "opportunistic", verifyCertificate: false, heloName });
 *   const result = await c.send({ mailFrom, recipients: [{ address }], message });
 *   await c.quit();
 *
 * Failures are SmtpClientError values whose `kind` says what failed
 * (connect, timeout, tls, protocol, reply, auth) and `phase` when. Refusals
 * of single recipients and of the message are not errors: `send()` returns
 * them as replies. A 421 at any point ends the session (`usable` false).
 *
 * Timeouts default to RFC 5321 §4.5.3.2 (greeting 5 min, MAIL/RCPT 5 min,
 * DATA initiation 2 min, each data block 3 min, final reply 10 min; 30 s to
 * connect, as Postfix).
 */
import type * as net from "node:net";
import * as tls from "node:tls";
import type { Reply } from "../smtp/reply.ts";
import { ReplyParser, ReplyParseError } from "../smtp/reply-parser.ts";
import { DotStuffer } from "../smtp/dot-stuffing.ts";
import { encodeXtext } from "../smtp/xtext.ts";
import { authenticate } from "./sasl-client.ts";
import { NO_CAPABILITIES, parseCapabilities, type Capabilities } from "./capabilities.ts";
import { SmtpClientError } from "./smtp-error.ts";
import { NETWORK_ERRNOS, errnoOf, openSocket, seconds, tlsInfo, tlsOptions } from "./transport.ts";

export { SmtpClientError, networkStatus, type SmtpClientErrorKind } from "./smtp-error.ts";
export type { Capabilities } from "./capabilities.ts";

/** none: never STARTTLS; opportunistic: STARTTLS when offered; starttls: STARTTLS or fail; implicit: TLS from the first byte (port 465). */
export type TlsMode = "none" | "opportunistic" | "starttls" | "implicit";

export interface Timeouts {
  connect: number;
  greeting: number;
  command: number;
  dataInit: number;
  dataBlock: number;
  dataTerm: number;
}

export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  connect: 30_000, greeting: 300_000, command: 300_000, dataInit: 120_000, dataBlock: 180_000, dataTerm: 600_000,
});

export interface ConnectOptions {
  /** IP or name to connect to. */
  host: string;
  port: number;
  tls: TlsMode;
  /** SNI and the name the certificate must carry (default: host when it is a name, else the IP). */
  servername?: string;
  /** Reject certificates that do not verify (chain and name). */
  verifyCertificate: boolean;
  /** Extra trusted CA certificate(s), in addition to the system's roots. */
  ca?: string | Buffer;
  /** Source IP for the connection. */
  localAddress?: string;
  heloName: string;
  timeouts?: Partial<Timeouts>;
}

export interface TlsInfo {
  version: string;
  cipher: string;
  authorized: boolean;
  authorizationError?: string;
}

export interface MailParams {
  size?: number;
  body?: "8BITMIME" | "7BIT";
  smtputf8?: boolean;
  ret?: "FULL" | "HDRS";
  envid?: string;
  requireTls?: boolean;
}

export interface Transaction {
  /** "" for the null reverse-path <>. */
  mailFrom: string;
  mailParams?: MailParams;
  recipients: { address: string; notify?: string[]; orcpt?: string }[];
  /** Message content with CRLF line ends, NOT dot-stuffed. */
  message: Buffer | (() => NodeJS.ReadableStream);
}

export interface TransactionResult {
  recipients: { address: string; reply: Reply }[];
  /** The reply to the end of data (or to a refused DATA); absent when no recipient was accepted. */
  final?: Reply;
}

function checkLine(s: string, what: string): string {
  if (/[\x00-\x1f\x7f]/.test(s)) throw new SmtpClientError("protocol", what, `${what}: control characters (CR, LF, …) are not allowed in ${JSON.stringify(s)}`);
  return s;
}

export class SmtpConnection {
  readonly #opts: ConnectOptions;
  readonly #t: Timeouts;
  #socket: net.Socket;
  #parser = new ReplyParser();
  #replies: Reply[] = [];
  #waiter: { resolve: (r: Reply) => void; reject: (e: SmtpClientError) => void } | null = null;
  #failure: SmtpClientError | null = null;
  #phase = "greeting";
  #usable = true;
  #capabilities: Capabilities = NO_CAPABILITIES;
  #tls: TlsInfo | null = null;
  #greeting: Reply = { code: 0, lines: [""] };
  #remote: { host: string; address: string; port: number };

  private constructor(opts: ConnectOptions, t: Timeouts, socket: net.Socket) {
    this.#opts = opts;
    this.#t = t;
    this.#socket = socket;
    this.#remote = { host: opts.host, address: socket.remoteAddress ?? opts.host, port: socket.remotePort ?? opts.port };
    this.#attach(socket);
    if (socket instanceof tls.TLSSocket) this.#tls = tlsInfo(socket);
  }

  /** Connect, read the greeting, EHLO, STARTTLS per `opts.tls`; resolves with a session ready for auth() or send(). */
  static async connect(opts: ConnectOptions): Promise<SmtpConnection> {
    const t: Timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    checkLine(opts.heloName, "EHLO");
    const socket = await openSocket(opts, t);
    const c = new SmtpConnection(opts, t, socket);
    try {
      await c.#open();
      return c;
    } catch (err) {
      c.close();
      throw err;
    }
  }

  get capabilities(): Capabilities {
    return this.#capabilities;
  }
  get tls(): TlsInfo | null {
    return this.#tls;
  }
  get remote(): { host: string; address: string; port: number } {
    return this.#remote;
  }
  /** The greeting (its text names the server), for Remote-MTA and diagnostics. */
  get greeting(): Reply {
    return this.#greeting;
  }
  /** False after a connection error, a timeout, a protocol error, a 421, quit() or close(). */
  get usable(): boolean {
    return this.#usable && this.#failure === null && !this.#socket.destroyed;
  }

  async #open(): Promise<void> {
    const g = await this.#read("greeting", this.#t.greeting);
    this.#greeting = g;
    if (g.code !== 220) throw this.#refused("greeting", g, "the server refused the connection");
    await this.#hello();
    const mode = this.#opts.tls;
    if (mode === "starttls" && !this.#capabilities.starttls) {
      throw new SmtpClientError("tls", "STARTTLS", `${this.#opts.host} port ${this.#opts.port} does not offer STARTTLS`, { host: this.#opts.host, port: this.#opts.port });
    }
    if ((mode === "starttls" || mode === "opportunistic") && this.#capabilities.starttls) {
      const r = await this.#command("STARTTLS", "STARTTLS", this.#t.command);
      if (r.code === 220) {
        await this.#upgrade();
        await this.#hello();
      } else if (mode === "starttls" || r.code === 421) {
        throw this.#refused("STARTTLS", r, "the server refused STARTTLS", "tls");
      } // opportunistic: carry on in plain text (RFC 7435).
    }
  }

  async #hello(): Promise<void> {
    const r = await this.#command(`EHLO ${this.#opts.heloName}`, "EHLO", this.#t.command);
    if (r.code === 250) {
      this.#capabilities = parseCapabilities(r);
      return;
    }
    if (r.code !== 500 && r.code !== 502) throw this.#refused("EHLO", r, "the server refused EHLO");
    const h = await this.#command(`HELO ${this.#opts.heloName}`, "HELO", this.#t.command);
    if (h.code !== 250) throw this.#refused("HELO", h, "the server refused HELO");
    this.#capabilities = { ...NO_CAPABILITIES, auth: [], raw: [] };
  }

  async #upgrade(): Promise<void> {
    // RFC 3207 §4.2: anything the server sent after its 220 came in plain text: discard it.
    this.#parser.reset();
    this.#replies = [];
    const plain = this.#socket;
    this.#detach(plain);
    plain.on("error", () => {}); // the TLS socket reports errors of the one it wraps
    const { host, port } = this.#opts;
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: plain, ...tlsOptions(this.#opts) });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new SmtpClientError("timeout", "STARTTLS", `no TLS handshake with ${host} port ${port} within ${seconds(this.#t.command)}`, { host, port, timeoutMs: this.#t.command }));
      }, this.#t.command);
      s.once("secureConnect", () => {
        clearTimeout(timer);
        s.off("error", onError);
        resolve(s);
      });
      const onError = (err: Error) => {
        clearTimeout(timer);
        s.on("error", () => {});
        s.destroy();
        reject(new SmtpClientError("tls", "STARTTLS", `TLS with ${host} port ${port} failed: ${err.message}`, { host, port, code: errnoOf(err), cause: err }));
      };
      s.once("error", onError);
    }).catch((err: SmtpClientError) => {
      this.#usable = false;
      this.#failure = err;
      throw err;
    });
    this.#socket = secure;
    this.#tls = tlsInfo(secure);
    this.#capabilities = NO_CAPABILITIES;
    this.#attach(secure);
  }

  // -- reading and writing ------------------------------------------------------------------

  #onData = (chunk: Buffer): void => {
    let replies: Reply[];
    try {
      replies = this.#parser.push(chunk);
    } catch (err) {
      const msg = err instanceof ReplyParseError ? err.message : String(err);
      this.#fail(new SmtpClientError("protocol", this.#phase, `the server broke the SMTP protocol during ${this.#phase}: ${msg}`, { host: this.#opts.host, port: this.#opts.port }));
      return;
    }
    for (const r of replies) {
      if (r.code === 421) this.#usable = false;
      this.#replies.push(r);
    }
    if (this.#waiter && this.#replies.length > 0) {
      const w = this.#waiter;
      this.#waiter = null;
      w.resolve(this.#replies.shift()!);
    }
  };
  #onError = (err: Error): void => {
    const code = errnoOf(err);
    const kind = code === undefined || NETWORK_ERRNOS.has(code) ? "connect" : "tls";
    this.#fail(new SmtpClientError(kind, this.#phase, `connection to ${this.#opts.host} port ${this.#opts.port} failed during ${this.#phase}: ${err.message}`, { host: this.#opts.host, port: this.#opts.port, code, cause: err }));
  };
  #onClose = (): void => {
    this.#fail(new SmtpClientError("connect", this.#phase, `${this.#opts.host} port ${this.#opts.port} closed the connection during ${this.#phase}`, { host: this.#opts.host, port: this.#opts.port, code: "ECONNRESET" }));
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

  #fail(err: SmtpClientError): void {
    this.#usable = false;
    this.#failure ??= err;
    this.#socket.destroy();
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = null;
      w.reject(this.#failure);
    }
  }

  #read(phase: string, timeoutMs: number): Promise<Reply> {
    this.#phase = phase;
    const queued = this.#replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const { host, port } = this.#opts;
        this.#fail(new SmtpClientError("timeout", phase, `no reply from ${host} port ${port} to ${phase} within ${seconds(timeoutMs)}`, { host, port, timeoutMs }));
      }, timeoutMs);
      this.#waiter = {
        resolve: (r) => { clearTimeout(timer); resolve(r); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  #write(data: string | Buffer): void {
    if (this.#failure) throw this.#failure;
    this.#socket.write(data);
  }

  #command(line: string, phase: string, timeoutMs: number): Promise<Reply> {
    try {
      this.#phase = phase;
      this.#write(`${line}\r\n`);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#read(phase, timeoutMs);
  }

  /** Write one block of DATA, waiting for the socket to drain (back-pressure) at most dataBlock ms. */
  #writeData(b: Buffer): Promise<void> {
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
      const onClose = () => { cleanup(); reject(this.#failure ?? new SmtpClientError("connect", "DATA", "connection closed during DATA")); };
      const timer = setTimeout(() => {
        cleanup();
        const { host, port } = this.#opts;
        this.#fail(new SmtpClientError("timeout", "DATA", `${host} port ${port} stopped taking message data for ${seconds(this.#t.dataBlock)}`, { host, port, timeoutMs: this.#t.dataBlock }));
        reject(this.#failure);
      }, this.#t.dataBlock);
      s.once("drain", onDrain);
      s.once("close", onClose);
    });
  }

  #refused(phase: string, r: Reply, message: string, kind: "reply" | "tls" | "auth" = "reply"): SmtpClientError {
    if (r.code === 421) this.#usable = false;
    return new SmtpClientError(kind, phase, message, { reply: r, host: this.#opts.host, port: this.#opts.port });
  }

  // -- AUTH (RFC 4954) ------------------------------------------------------------------------

  /**
   * Authenticate with the best mechanism both sides know, in `preferred` order
   * (default SCRAM-SHA-256, PLAIN, LOGIN). SCRAM checks the server's signature.
   * Throws SmtpClientError kind "auth" (with the server's reply, e.g. 535, when there is one).
   */
  async auth(user: string, password: string, preferred: string[] = ["SCRAM-SHA-256", "PLAIN", "LOGIN"]): Promise<void> {
    const { host, port } = this.#opts;
    await authenticate({
      offered: this.#capabilities.auth,
      encrypted: this.#tls !== null,
      host, port, user, password, preferred,
      command: (line) => this.#command(line, "AUTH", this.#t.command),
      refused: (r) => this.#refused("AUTH", r, "authentication failed", "auth"),
      close: () => this.close(),
    });
  }

  // -- mail transactions ----------------------------------------------------------------------

  /**
   * One mail transaction. Parameters are sent only for extensions the server
   * advertised. With PIPELINING, MAIL, every RCPT and DATA go in one write.
   * Throws when MAIL is refused (kind "reply", phase "MAIL": the reply applies
   * to every recipient), on a 421, and on connection errors and timeouts;
   * refused recipients and a refused message are returned, not thrown.
   */
  async send(tx: Transaction): Promise<TransactionResult> {
    if (!this.usable) throw this.#failure ?? new SmtpClientError("protocol", "MAIL", "the connection is no longer usable");
    if (tx.recipients.length === 0) throw new SmtpClientError("protocol", "RCPT", "a transaction needs at least one recipient");
    const caps = this.#capabilities;
    const t = this.#t;
    const mailLine = this.#mailLine(tx);
    const rcptLines = tx.recipients.map((r) => this.#rcptLine(r));
    const results: { address: string; reply: Reply }[] = [];
    const accepted = () => results.some((r) => r.reply.code >= 200 && r.reply.code < 300);
    const check421 = (phase: string, r: Reply) => {
      if (r.code === 421) {
        this.close();
        throw this.#refused(phase, r, "the server ended the session");
      }
    };

    let dataReply: Reply | undefined;
    if (caps.pipelining) {
      this.#phase = "MAIL";
      this.#write([mailLine, ...rcptLines, "DATA"].map((l) => `${l}\r\n`).join(""));
      const mail = await this.#read("MAIL", t.command);
      check421("MAIL", mail);
      for (const r of tx.recipients) {
        const reply = await this.#read("RCPT", t.command);
        check421("RCPT", reply);
        results.push({ address: r.address, reply });
      }
      dataReply = await this.#read("DATA", t.dataInit);
      check421("DATA", dataReply);
      if (mail.code < 200 || mail.code >= 300) {
        if (dataReply.code === 354) await this.#abortData();
        throw this.#refused("MAIL", mail, "the server refused the sender");
      }
      if (!accepted()) {
        // RFC 2920 §3.1: the server should refuse DATA; if it did not, end the empty message.
        if (dataReply.code === 354) await this.#abortData();
        await this.#rsetQuietly();
        return { recipients: results };
      }
    } else {
      const mail = await this.#command(mailLine, "MAIL", t.command);
      check421("MAIL", mail);
      if (mail.code < 200 || mail.code >= 300) throw this.#refused("MAIL", mail, "the server refused the sender");
      for (let i = 0; i < tx.recipients.length; i++) {
        const reply = await this.#command(rcptLines[i], "RCPT", t.command);
        check421("RCPT", reply);
        results.push({ address: tx.recipients[i].address, reply });
      }
      if (!accepted()) {
        await this.#rsetQuietly();
        return { recipients: results };
      }
      dataReply = await this.#command("DATA", "DATA", t.dataInit);
      check421("DATA", dataReply);
    }

    if (dataReply.code !== 354) {
      await this.#rsetQuietly();
      return { recipients: results, final: dataReply };
    }
    await this.#sendContent(tx.message);
    const final = await this.#read("DATA", t.dataTerm);
    if (final.code === 421) this.close();
    return { recipients: results, final };
  }

  #mailLine(tx: Transaction): string {
    const caps = this.#capabilities;
    const p = tx.mailParams ?? {};
    const params: string[] = [];
    if (caps.size !== undefined) {
      const size = p.size ?? (Buffer.isBuffer(tx.message) ? tx.message.length : undefined);
      if (size !== undefined) params.push(`SIZE=${size}`);
    }
    if (caps.eightBitMime) {
      const body = p.body ?? (Buffer.isBuffer(tx.message) && has8Bit(tx.message) ? "8BITMIME" : undefined);
      if (body) params.push(`BODY=${body}`);
    }
    if (p.smtputf8 && caps.smtputf8) params.push("SMTPUTF8");
    if (caps.dsn) {
      if (p.ret) params.push(`RET=${p.ret}`);
      if (p.envid) params.push(`ENVID=${encodeXtext(p.envid)}`);
    }
    if (p.requireTls && caps.requireTls) params.push("REQUIRETLS");
    return checkLine(["MAIL FROM:<" + tx.mailFrom + ">", ...params].join(" "), "MAIL");
  }

  #rcptLine(r: Transaction["recipients"][number]): string {
    const params: string[] = [];
    if (this.#capabilities.dsn) {
      if (r.notify && r.notify.length > 0) params.push(`NOTIFY=${r.notify.join(",").toUpperCase()}`);
      if (r.orcpt) params.push(`ORCPT=${encodeOrcpt(r.orcpt)}`);
    }
    return checkLine(["RCPT TO:<" + r.address + ">", ...params].join(" "), "RCPT");
  }

  async #sendContent(message: Transaction["message"]): Promise<void> {
    this.#phase = "DATA";
    const stuffer = new DotStuffer();
    // One write per input chunk (its stuffed pieces joined): few packets, and back-pressure per chunk.
    const block = (chunk: Buffer) => {
      const parts = stuffer.encode(chunk);
      return parts.length === 1 ? parts[0] : Buffer.concat(parts);
    };
    if (Buffer.isBuffer(message)) {
      for (let i = 0; i < message.length; i += 65536) await this.#writeData(block(message.subarray(i, i + 65536)));
    } else {
      try {
        for await (const chunk of message()) {
          const buf = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
          if (buf.length > 0) await this.#writeData(block(buf));
        }
      } catch (err) {
        if (err instanceof SmtpClientError) throw err;
        // The message cannot be ended cleanly (a terminator would send a truncated message).
        this.#fail(new SmtpClientError("protocol", "DATA", `reading the message failed: ${(err as Error).message}`, { cause: err }));
        throw err;
      }
    }
    await this.#writeData(stuffer.end());
  }

  async #abortData(): Promise<void> {
    await this.#writeData(Buffer.from(".\r\n"));
    await this.#read("DATA", this.#t.dataTerm);
  }

  async #rsetQuietly(): Promise<void> {
    const r = await this.#command("RSET", "RSET", this.#t.command);
    if (r.code === 421) this.close();
  }

  /** RSET (RFC 5321 §4.1.1.5); throws when it is not accepted. */
  async rset(): Promise<void> {
    const r = await this.#command("RSET", "RSET", this.#t.command);
    if (r.code !== 250) throw this.#refused("RSET", r, "the server refused RSET");
  }

  /** NOOP: a cheap "are you still there" before reusing a connection. */
  noop(): Promise<Reply> {
    return this.#command("NOOP", "NOOP", this.#t.command);
  }

  /** QUIT and close; never throws. */
  async quit(): Promise<void> {
    try {
      if (this.usable) {
        this.#usable = false;
        await this.#command("QUIT", "QUIT", Math.min(this.#t.command, 10_000));
      }
    } catch {
      // the session ends either way
    } finally {
      this.close();
    }
  }

  /** Drop the connection at once. */
  close(): void {
    this.#usable = false;
    this.#detach(this.#socket);
    this.#socket.on("error", () => {});
    this.#socket.destroy();
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = null;
      w.reject(this.#failure ?? new SmtpClientError("connect", this.#phase, "the connection was closed"));
    }
  }
}

function has8Bit(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] > 0x7f) return true;
  return false;
}

/** ORCPT=addr-type;xtext (RFC 3461 §4.2); the utf-8 type uses RFC 6533's \x{HEX} form for non-ASCII. */
function encodeOrcpt(orcpt: string): string {
  const semi = orcpt.indexOf(";");
  const type = semi < 0 ? "rfc822" : orcpt.slice(0, semi);
  const addr = semi < 0 ? orcpt : orcpt.slice(semi + 1);
  if (type.toLowerCase() !== "utf-8") return `${type};${encodeXtext(addr)}`;
  let out = "";
  for (const ch of addr) {
    const cp = ch.codePointAt(0)!;
    out += cp >= 33 && cp <= 126 && ch !== "+" && ch !== "=" && ch !== "\\" ? ch : `\\x{${cp.toString(16).toUpperCase()}}`;
  }
  return `${type};${out}`;
}
