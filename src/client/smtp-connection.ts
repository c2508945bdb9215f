/**
 * Petrel's client session, SMTP (RFC 5321) or LMTP (RFC 2033), used by the
 * remote and LMTP delivery agents and by `petrel send`: connect (TCP, a
 * UNIX-domain socket, or implicit TLS), read the greeting, EHLO (HELO when
 * EHLO is unknown) or LHLO, STARTTLS per the TLS mode (RFC 3207: EHLO again
 * afterwards), AUTH, and mail transactions (mail-transaction.ts).
 *
 *   const c = await SmtpConnection.connect({ host, port: 25, tls: "opportunistic", verifyCertificate: false, heloName });
 *   const result = await c.send({ mailFrom, recipients: [{ address }], message });
 *   await c.quit();
 *
 * Failures are SmtpClientError values whose `kind` says what failed
 * (connect, timeout, tls, protocol, reply, auth) and `phase` when. Refusals
 * of single recipients and of the message are not errors: `send()` returns
 * them as replies. A 421 at any point ends the session (`usable` false), and
 * so does anything the server says while no command is outstanding.
 */
import type { DetailedPeerCertificate } from "node:tls";
import type { Reply } from "../smtp/reply.ts";
import { authenticate } from "./sasl-client.ts";
import { NO_CAPABILITIES, parseCapabilities, type Capabilities } from "./capabilities.ts";
import { Channel } from "./channel.ts";
import { DEFAULT_TIMEOUTS, peerName, type ConnectOptions, type MailProtocol, type Timeouts, type TlsInfo } from "./connect-options.ts";
import { checkLine, runTransaction, type OutgoingTransaction, type TransactionResult } from "./mail-transaction.ts";
import { SmtpClientError } from "./smtp-error.ts";
import { openSocket } from "./transport.ts";

export { SmtpClientError, networkStatus, type SmtpClientErrorKind } from "./smtp-error.ts";
export type { Capabilities } from "./capabilities.ts";
export { DEFAULT_TIMEOUTS, type ConnectOptions, type MailProtocol, type Timeouts, type TlsInfo, type TlsMode } from "./connect-options.ts";
export type { MailParams, RecipientResult, OutgoingTransaction, TransactionRecipient, TransactionResult } from "./mail-transaction.ts";

export class SmtpConnection {
  readonly #opts: ConnectOptions;
  readonly #t: Timeouts;
  readonly #channel: Channel;
  readonly #protocol: MailProtocol;
  #ended = false;
  #capabilities: Capabilities = NO_CAPABILITIES;
  #greeting: Reply = { code: 0, lines: [""] };
  #remote: { host: string; address: string; port: number };
  #transactions = 0;
  /** The server holds a transaction we did not finish (MAIL accepted, no end of data): RSET before the next MAIL. */
  #transactionOpen = false;

  private constructor(opts: ConnectOptions, t: Timeouts, channel: Channel) {
    this.#opts = opts;
    this.#t = t;
    this.#channel = channel;
    this.#protocol = opts.protocol ?? "smtp";
    this.#remote = { host: opts.host, address: channel.remoteAddress ?? opts.path ?? opts.host, port: channel.remotePort ?? opts.port };
  }

  /** Connect, read the greeting, EHLO/LHLO, STARTTLS per `opts.tls`; resolves with a session ready for auth() or send(). */
  static async connect(opts: ConnectOptions): Promise<SmtpConnection> {
    const t: Timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    checkLine(opts.heloName, opts.protocol === "lmtp" ? "LHLO" : "EHLO");
    const { socket, tls } = await openSocket(opts, t);
    const c = new SmtpConnection(opts, t, new Channel(opts, socket, tls));
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
    return this.#channel.tls;
  }
  /** The server's certificate with its issuer chain as it was sent, or null in plain text (for diagnostics). */
  get peerCertificate(): DetailedPeerCertificate | null {
    return this.#channel.peerCertificate;
  }
  get remote(): { host: string; address: string; port: number } {
    return this.#remote;
  }
  /** Our address on this connection (TLS-RPT's sending-mta-ip). */
  get localAddress(): string | undefined {
    return this.#channel.localAddress;
  }
  get protocol(): MailProtocol {
    return this.#protocol;
  }
  /** The greeting (its text names the server), for Remote-MTA and diagnostics. */
  get greeting(): Reply {
    return this.#greeting;
  }
  /** MAIL commands sent in this session (RFC 9422 MAILMAX counts every one, accepted or not). */
  get transactions(): number {
    return this.#transactions;
  }
  /** False after a connection error, a timeout, a protocol error, a 421, anything said while idle, quit() or close(). */
  get usable(): boolean {
    return !this.#ended && this.#channel.open;
  }
  /** Why the session ended (a failure, a close), or null while it is open. */
  get failure(): SmtpClientError | null {
    return this.#channel.failure;
  }

  async #open(): Promise<void> {
    const g = await this.#channel.read("greeting", this.#t.greeting);
    this.#greeting = g;
    if (g.code !== 220) throw this.#refused("greeting", g, "the server refused the connection");
    await this.#hello();
    const mode = this.#opts.tls;
    if (mode === "starttls" && !this.#capabilities.starttls) {
      throw new SmtpClientError("tls", "STARTTLS", `${peerName(this.#opts)} does not offer STARTTLS`, { host: this.#opts.host, port: this.#opts.port });
    }
    if ((mode === "starttls" || mode === "opportunistic") && this.#capabilities.starttls) {
      const r = await this.#startTls();
      if (r.code !== 220 && (mode === "starttls" || r.code === 421)) {
        throw this.#refused("STARTTLS", r, "the server refused STARTTLS", "tls");
      } // opportunistic: carry on in plain text (RFC 7435).
    }
  }

  /** STARTTLS; on 220 the handshake and EHLO again (RFC 3207 §4.2: the capabilities start over). */
  async #startTls(): Promise<Reply> {
    const r = await this.#channel.command("STARTTLS", "STARTTLS", this.#t.command);
    if (r.code === 220) {
      this.#capabilities = NO_CAPABILITIES;
      await this.#channel.startTls(this.#t.command);
      await this.#hello();
    }
    return r;
  }

  /**
   * STARTTLS on a session opened with `tls: "none"`, for a caller that wants
   * to see the server before and after TLS (`petrel check`). Throws kind
   * "tls" when it is not offered, refused or the handshake fails.
   */
  async startTls(): Promise<void> {
    if (this.tls) throw new SmtpClientError("tls", "STARTTLS", "TLS is already in use", { host: this.#opts.host, port: this.#opts.port });
    if (!this.#capabilities.starttls) {
      throw new SmtpClientError("tls", "STARTTLS", `${peerName(this.#opts)} does not offer STARTTLS`, { host: this.#opts.host, port: this.#opts.port });
    }
    const r = await this.#startTls();
    if (r.code !== 220) throw this.#refused("STARTTLS", r, "the server refused STARTTLS", "tls");
  }

  async #hello(): Promise<void> {
    const verb = this.#protocol === "lmtp" ? "LHLO" : "EHLO";
    const r = await this.#channel.command(`${verb} ${this.#opts.heloName}`, verb, this.#t.command);
    if (r.code === 250) {
      this.#capabilities = parseCapabilities(r);
      return;
    }
    // RFC 2033 §4.1: an LMTP server knows LHLO; only SMTP falls back to HELO.
    if (this.#protocol === "lmtp" || (r.code !== 500 && r.code !== 502)) throw this.#refused(verb, r, `the server refused ${verb}`);
    const h = await this.#channel.command(`HELO ${this.#opts.heloName}`, "HELO", this.#t.command);
    if (h.code !== 250) throw this.#refused("HELO", h, "the server refused HELO");
    this.#capabilities = { ...NO_CAPABILITIES, auth: [], raw: [] };
  }

  #refused(phase: string, r: Reply, message: string, kind: "reply" | "tls" | "auth" = "reply"): SmtpClientError {
    if (r.code === 421) this.close();
    return new SmtpClientError(kind, phase, message, { reply: r, host: this.#opts.host, port: this.#opts.port });
  }

  /**
   * Authenticate with the best mechanism both sides know, in `preferred` order
   * (default SCRAM-SHA-256, PLAIN, LOGIN). SCRAM checks the server's signature.
   * Throws SmtpClientError kind "auth" (with the server's reply, e.g. 535, when there is one).
   */
  async auth(user: string, password: string, preferred: string[] = ["SCRAM-SHA-256", "PLAIN", "LOGIN"]): Promise<void> {
    const { host, port } = this.#opts;
    await authenticate({
      offered: this.#capabilities.auth,
      encrypted: this.tls !== null,
      host, port, user, password, preferred,
      command: (line) => this.#channel.command(line, "AUTH", this.#t.command),
      refused: (r) => this.#refused("AUTH", r, "authentication failed", "auth"),
      close: () => this.close(),
    });
  }

  /**
   * One mail transaction (mail-transaction.ts). Parameters are sent only for
   * extensions the server advertised. Throws when MAIL is refused, on a 421,
   * and on connection errors and timeouts; refused recipients and a refused
   * message are returned, not thrown.
   */
  async send(tx: OutgoingTransaction): Promise<TransactionResult> {
    if (!this.usable) throw this.#channel.failure ?? new SmtpClientError("protocol", "MAIL", "the connection is no longer usable");
    if (this.#transactionOpen) await this.rset();
    this.#transactions++;
    return runTransaction({
      channel: this.#channel,
      capabilities: this.#capabilities,
      protocol: this.#protocol,
      timeouts: this.#t,
      ended: () => this.close(),
      leftOpen: () => { this.#transactionOpen = true; },
    }, tx);
  }

  /** RSET (RFC 5321 §4.1.1.5); throws when it is not accepted (a 421 also ends the session). */
  async rset(): Promise<void> {
    const r = await this.#channel.command("RSET", "RSET", this.#t.command);
    if (r.code !== 250) throw this.#refused("RSET", r, "the server refused RSET");
    this.#transactionOpen = false;
  }

  /** NOOP: a cheap "are you still there". */
  noop(): Promise<Reply> {
    return this.#channel.command("NOOP", "NOOP", this.#t.command);
  }

  /** QUIT and close; never throws. */
  async quit(): Promise<void> {
    try {
      if (this.usable) {
        this.#ended = true;
        await this.#channel.command("QUIT", "QUIT", Math.min(this.#t.command, 10_000));
      }
    } catch {
      // the session ends either way
    } finally {
      this.close();
    }
  }

  /** Drop the connection at once. */
  close(): void {
    this.#ended = true;
    this.#channel.close();
  }
}
