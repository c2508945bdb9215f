import { isUtf8 } from "node:buffer";
import { reply, serializeReply, type Reply } from "./reply.ts";
import type { Mailbox } from "./envelope.ts";
import { DataDecoder, type BareNewlinePolicy } from "./data-decoder.ts";
import { LineEndNormalizer } from "./line-end-normalizer.ts";
import { afterKeyword, splitCommand } from "./command-line.ts";
import { parsePath } from "./address.ts";
import { parseMailParameters, parseRcptParameters, type MailParameters } from "./mail-parameters.ts";
import * as R from "./replies.ts";
import type {
  AcceptedRecipient, MessageSink, SessionHandler, SessionState, SessionTransport, Transaction,
} from "./session-handler.ts";
import type { SaslExchange } from "../sasl/exchange.ts";

/**
 * The SMTP server protocol engine for one connection (RFC 5321 and the
 * extensions Petrel advertises). Bytes go in through `receive()`, replies
 * come out through the transport; decisions and storage are asked of the
 * handler. Nothing here touches a socket, a file or the clock.
 */

export interface SessionLimits {
  /** RFC 1870 SIZE, in octets of content. */
  readonly messageSize: number;
  /** RFC 5321 §4.5.3.1.8 recipients per transaction. */
  readonly recipients: number;
  /** RFC 9422 MAILMAX: transactions per connection. */
  readonly messagesPerConnection: number;
  /** Longest command line, CRLF included (RFC 5321 §4.5.3.1.4 says 512; extensions add). */
  readonly commandLine: number;
  /** Errors before every reply is delayed (Postfix smtpd_soft_error_limit). */
  readonly softErrors: number;
  /** Errors before the connection is closed (Postfix smtpd_hard_error_limit). */
  readonly hardErrors: number;
}

export interface SessionOptions {
  readonly hostname: string;
  /** Text after "220 hostname " in the greeting. */
  readonly banner: string;
  readonly limits: SessionLimits;
  readonly bareNewline: BareNewlinePolicy;
  /** STARTTLS can be offered (a certificate exists and the connection is not yet TLS). */
  readonly startTlsAvailable: boolean;
  /** The connection is TLS from the first byte (port 465, RFC 8314). */
  readonly implicitTls: { readonly version: string; readonly cipher: string } | null;
  /** SASL mechanisms to offer once TLS is up; empty disables AUTH. */
  readonly authMechanisms: readonly string[];
  /** MAIL needs a prior successful AUTH (submission roles). */
  readonly requireAuth: boolean;
  /** Delay used once the soft error limit is passed (injected: no clock here). */
  readonly errorDelay?: () => Promise<void>;
}

/** RFC 4954 §4: the longest AUTH command or response line. */
const AUTH_LINE = 12288;
/** A command that never ends is cut off after this many octets without CRLF. */
export const MAX_UNTERMINATED_LINE = 1024 * 1024;
/** Buffered input while a decision is pending before we stop reading the socket. */
const HIGH_WATER = 256 * 1024;

const LF = 0x0a;
const CR = 0x0d;

type Mode = "command" | "data" | "bdat" | "auth" | "tls-pending" | "closed";

export class Session {
  private readonly opts: SessionOptions;
  private readonly handler: SessionHandler;
  private readonly transport: SessionTransport;

  // Session state (RFC 5321 §4.1.4: EHLO/RSET/STARTTLS reset parts of it).
  private helo: string | null = null;
  private esmtp = false;
  private tls: { version: string; cipher: string } | null;
  private authUser: string | null = null;
  private errors = 0;
  private transactions = 0;

  // Transaction state.
  private mailFrom: Mailbox | null | undefined = undefined;
  private mailParams: MailParameters | null = null;
  private recipients: AcceptedRecipient[] = [];

  // Message in progress (DATA or BDAT).
  private sink: MessageSink | null = null;
  private decoder: DataDecoder | null = null;
  private normalizer: LineEndNormalizer | null = null;
  private messageBytes = 0;
  private messageTooBig = false;
  /** BDAT: octets of the current chunk still to read, whether it is LAST, and a failure that sticks until the transaction ends. */
  private bdatRemaining = 0;
  private bdatLast = false;
  private bdatFailure: Reply | null = null;
  private bdatStarted = false;

  // AUTH in progress.
  private auth: SaslExchange | null = null;

  // Input handling.
  private mode: Mode = "command";
  private readonly queue: Buffer[] = [];
  private queued = 0;
  /** Bytes of an over-long command line being thrown away. */
  private discarding = -1;
  private running = false;
  private paused = false;
  private out = "";
  private started = false;
  private earlyTalker = false;
  private seenInput = false;

  constructor(opts: SessionOptions, handler: SessionHandler, transport: SessionTransport) {
    this.opts = opts;
    this.handler = handler;
    this.transport = transport;
    this.tls = opts.implicitTls ? { ...opts.implicitTls } : null;
  }

  get state(): SessionState {
    return { helo: this.helo, esmtp: this.esmtp, tls: this.tls, authUser: this.authUser };
  }

  /** What the connection is waiting for, so it can pick the right timeout. */
  get phase(): "command" | "data" | "closed" {
    if (this.mode === "closed") return "closed";
    return this.mode === "data" || this.mode === "bdat" ? "data" : "command";
  }

  /** True while a message is being received or stored (graceful shutdown waits for it). */
  get inTransaction(): boolean {
    return this.mailFrom !== undefined;
  }

  /** Send the greeting (after the connection's optional greeting delay). */
  start(): void {
    this.started = true;
    if (this.earlyTalker) {
      // Postfix's "improper command pipelining after CONNECT": a client that
      // talks before the greeting is not speaking SMTP (RFC 5321 §4.3.1).
      this.queue.length = 0;
      this.queued = 0;
      this.handler.event?.("pipelining-violation", { when: "before greeting" });
      this.send(R.earlyTalker);
      this.close();
      return;
    }
    this.send(reply(220, undefined, `${this.opts.hostname} ${this.opts.banner}`));
    this.flush();
    if (this.queued > 0) void this.pump();
  }

  /** Bytes from the client. */
  receive(chunk: Buffer): void {
    if (this.mode === "closed" || this.mode === "tls-pending" || chunk.length === 0) return;
    if (!this.started) {
      this.earlyTalker = true;
      return;
    }
    if (!this.seenInput) {
      this.seenInput = true;
      // A TLS ClientHello (record type 22, version 3.x) on a plaintext port:
      // the client wanted port 465 or forgot STARTTLS. Say so and close.
      // (0x16 never starts an SMTP command, so one byte is enough to tell.)
      if (chunk[0] === 0x16 && (chunk.length === 1 || chunk[1] === 0x03) && this.tls === null) {
        this.handler.event?.("protocol-error", { problem: "tls on plaintext port" });
        this.send(R.notSmtp);
        this.close();
        return;
      }
    }
    this.queue.push(chunk);
    this.queued += chunk.length;
    if (this.running) {
      if (this.queued > HIGH_WATER && !this.paused) {
        this.paused = true;
        this.transport.pause();
      }
      return;
    }
    void this.pump();
  }

  /** The TLS handshake after STARTTLS completed (RFC 3207 §4.2: forget everything). */
  tlsEstablished(info: { version: string; cipher: string }): void {
    if (this.mode !== "tls-pending") return;
    this.tls = { ...info };
    this.helo = null;
    this.esmtp = false;
    this.authUser = null;
    this.resetTransaction();
    this.mode = "command";
  }

  /** The connection is gone (or is being closed by the server). */
  async closed(): Promise<void> {
    this.mode = "closed";
    this.queue.length = 0;
    this.queued = 0;
    await this.abortMessage();
  }

  /** The server is shutting down or a timeout fired: say 421 and close (RFC 5321 §3.8). */
  shutdown(text: string, status = "4.3.2"): void {
    if (this.mode === "closed") return;
    this.send(reply(421, status, `${this.opts.hostname} ${text}`));
    this.close();
  }

  // ---------------------------------------------------------------- input

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queued > 0 && this.mode !== "closed" && this.mode !== "tls-pending") {
        const progressed = await this.step();
        if (!progressed) break;
      }
    } catch (err) {
      // An exception here is a bug; never let it take the process down.
      this.handler.event?.("protocol-error", { error: String(err) });
      this.send(R.localError);
      this.close();
    } finally {
      this.running = false;
      this.flush();
      if (this.paused && this.queued < HIGH_WATER / 2) {
        this.paused = false;
        this.transport.resume();
      }
    }
    if (this.queued > 0 && !this.running && this.mode !== "closed" && this.mode !== "tls-pending" && this.canProgress()) {
      void this.pump();
    }
  }

  /**
   * In command mode a partial line cannot progress until more input arrives;
   * takeLine() waits only on a single chunk without LF that is within the
   * line limit. Anything else (several chunks to join, an over-long line to
   * discard) must be processed now, or a paused transport is never resumed.
   */
  private canProgress(): boolean {
    if (this.mode !== "command" && this.mode !== "auth") return true;
    // The same limit as takeLine(), or a partial AUTH line between the two
    // limits would restart the pump forever (a busy loop on microtasks).
    return this.queue.length > 1 || this.discarding >= 0 || this.queued > this.lineLimit() ||
      this.queue.some((b) => b.includes(LF));
  }

  /** The longest line takeLine() waits for. RFC 4954 §4: AUTH and its responses may be up to 12288 octets. */
  private lineLimit(): number {
    return this.mode === "auth" ? Math.max(this.opts.limits.commandLine, AUTH_LINE) : this.opts.limits.commandLine;
  }

  private async step(): Promise<boolean> {
    switch (this.mode) {
      case "command":
      case "auth": {
        const line = this.takeLine();
        if (line === null) return false;
        if (line === "overflow") return true;
        // Postfix smtpd_error_sleep_time: past the soft limit every reply is slowed.
        if (this.overSoftErrorLimit && this.opts.errorDelay) {
          this.flush();
          await this.opts.errorDelay();
          if (this.isClosed()) return false;
        }
        if (this.mode === "auth") await this.authLine(line);
        else await this.commandLine(line);
        return true;
      }
      case "data":
        await this.dataInput();
        return true;
      case "bdat":
        await this.bdatInput();
        return true;
      default:
        return false;
    }
  }

  private shift(): Buffer {
    const b = this.queue.shift()!;
    this.queued -= b.length;
    return b;
  }

  private unshift(b: Buffer): void {
    if (b.length === 0) return;
    this.queue.unshift(b);
    this.queued += b.length;
  }

  /**
   * The next command line without its CRLF, or null if none is complete, or
   * "overflow" after an over-long line was handled. Lines ending in a bare LF
   * or holding a bare CR are refused (DESIGN: no bare line ends in the
   * dialogue), as is invalid UTF-8.
   */
  private takeLine(): Buffer | "overflow" | null {
    const limit = this.lineLimit();
    while (this.queue.length > 0) {
      let head = this.queue[0];
      if (this.discarding >= 0) {
        const lf = head.indexOf(LF);
        if (lf === -1) {
          this.discarding += head.length;
          this.shift();
          if (this.discarding > MAX_UNTERMINATED_LINE) {
            this.handler.event?.("line-too-long", { unterminated: true });
            this.send(R.lineNeverEnds);
            this.close();
            return "overflow";
          }
          continue;
        }
        this.shift();
        this.unshift(head.subarray(lf + 1));
        this.discarding = -1;
        this.handler.event?.("line-too-long", {});
        this.error(R.lineTooLong);
        return "overflow";
      }
      let lf = head.indexOf(LF);
      if (lf === -1) {
        if (this.queue.length === 1) {
          if (head.length > limit) {
            this.shift();
            this.discarding = head.length;
            continue;
          }
          return null;
        }
        // Join with the next chunk and look again (lines are short; this is rare).
        this.shift();
        const next = this.shift();
        this.unshift(Buffer.concat([head, next]));
        continue;
      }
      this.shift();
      if (lf + 1 > limit) {
        this.unshift(head.subarray(lf + 1));
        this.handler.event?.("line-too-long", {});
        this.error(R.lineTooLong);
        return "overflow";
      }
      const line = head.subarray(0, lf + 1);
      this.unshift(head.subarray(lf + 1));
      return line;
    }
    return null;
  }

  // ------------------------------------------------------------- commands

  private async commandLine(raw: Buffer): Promise<void> {
    const bad = lineEndProblem(raw);
    if (bad) {
      this.handler.event?.("protocol-error", { problem: bad });
      this.error(bad === "bare LF" ? R.bareLf : R.bareCr);
      return;
    }
    const body = raw.subarray(0, raw.length - 2);
    if (body.includes(0)) {
      // RFC 5321 §4.1.1: commands are text; a NUL would be cut off or smuggled by C code downstream.
      this.handler.event?.("protocol-error", { problem: "NUL" });
      this.error(R.nulInCommand);
      return;
    }
    if (!isUtf8(body)) {
      this.error(R.invalidUtf8);
      return;
    }
    const line = body.toString("utf8");
    const { verb, arg } = splitCommand(line);
    this.handler.event?.("command", { verb });
    switch (verb) {
      case "EHLO": return this.ehlo(arg, true);
      case "HELO": return this.ehlo(arg, false);
      case "MAIL": return this.mail(arg);
      case "RCPT": return this.rcpt(arg);
      case "DATA": return this.data(arg);
      case "BDAT": return this.bdat(arg);
      case "RSET": return this.rset(arg);
      case "NOOP": return this.reply(R.ok);
      case "QUIT": return this.quit();
      case "VRFY": return this.reply(arg.trim() === "" ? R.syntax("VRFY address") : R.cannotVrfy);
      case "EXPN": return this.error(R.notImplemented("EXPN"));
      case "HELP": return this.reply(R.help);
      case "STARTTLS": return this.startTls(arg);
      case "AUTH": return this.authCommand(arg);
      case "TURN": case "ETRN": case "SEND": case "SOML": case "SAML":
        return this.error(R.notImplemented(verb));
      case "":
        return this.error(R.emptyCommand);
      default:
        // Looks like HTTP or TLS bytes on a plaintext port? Say so and close.
        if (looksLikeHttp(verb)) {
          this.handler.event?.("protocol-error", { problem: "http" });
          this.send(R.notSmtp);
          this.close();
          return;
        }
        return this.error(R.unknownCommand);
    }
  }

  private ehlo(arg: string, extended: boolean): void {
    const name = arg.trim();
    if (name === "" || /\s/.test(name)) {
      return this.error(R.syntax(extended ? "EHLO hostname" : "HELO hostname"));
    }
    if (this.pipelinedAfter()) return;
    void this.abortMessage();
    this.resetTransaction();
    this.helo = name;
    this.esmtp = extended;
    if (!extended) {
      this.reply(reply(250, undefined, this.opts.hostname));
      return;
    }
    const lines = [`${this.opts.hostname} Hello ${name}`, ...this.capabilities()];
    this.reply(reply(250, undefined, ...lines));
  }

  /** EHLO keywords (RFC 5321 §4.1.1.1): exactly what this session implements now. */
  capabilities(): string[] {
    const l = this.opts.limits;
    const caps = [
      "PIPELINING",
      `SIZE ${l.messageSize}`,
      "8BITMIME",
      "SMTPUTF8",
      "ENHANCEDSTATUSCODES",
      "CHUNKING",
      "DSN",
    ];
    if (this.tls === null && this.opts.startTlsAvailable) caps.push("STARTTLS");
    if (this.tls !== null && this.opts.authMechanisms.length > 0 && this.authUser === null) {
      caps.push(`AUTH ${this.opts.authMechanisms.join(" ")}`);
    }
    // RFC 8689 §4: REQUIRETLS is only offered on a TLS-protected session.
    if (this.tls !== null) caps.push("REQUIRETLS");
    caps.push(`LIMITS RCPTMAX=${l.recipients} MAILMAX=${l.messagesPerConnection}`);
    return caps;
  }

  private async mail(arg: string): Promise<void> {
    if (this.helo === null) return this.error(R.needHelo);
    if (this.mailFrom !== undefined) return this.error(R.nestedMail);
    if (this.opts.requireAuth && this.authUser === null) {
      return this.error(this.tls === null && this.opts.authMechanisms.length > 0 ? R.needTlsThenAuth : R.authRequired);
    }
    if (this.transactions >= this.opts.limits.messagesPerConnection) {
      this.send(R.tooManyMessages);
      this.close();
      return;
    }
    const text = afterKeyword(arg, "FROM:");
    if (text === null) return this.error(R.syntax("MAIL FROM:<address>"));
    const path = parsePath(text, { allowUtf8: true, allowNull: true });
    if (!path.ok) return this.error(R.badAddress(path.reason));
    const e = this.esmtp;
    // RFC 4954 §5: AUTH= is allowed whenever AUTH was offered (clients such as
    // Postfix and Exim send AUTH=<> then); from an unauthenticated client it
    // is not trusted and counts as AUTH=<>.
    const authOffered = this.authUser !== null || (this.tls !== null && this.opts.authMechanisms.length > 0 && this.handler.startAuth !== undefined);
    const parsed = parseMailParameters(path.rest, {
      size: e, eightBitMime: e, smtputf8: e, dsn: e, auth: e && authOffered, requireTls: e && this.tls !== null,
    });
    if (!parsed.ok) return this.error(reply(parsed.code, parsed.status, parsed.text));
    const params = parsed.params;
    if (params.auth !== undefined && this.authUser === null) params.auth = "<>";
    if (path.mailbox !== null && !params.smtputf8 && !isAscii(path.mailbox.localPart + path.mailbox.domain)) {
      return this.error(R.needSmtputf8);
    }
    if (params.size !== undefined && params.size > this.opts.limits.messageSize) {
      return this.error(R.sizeExceeded(this.opts.limits.messageSize));
    }
    const decision = await this.handler.mail(this.state, path.mailbox, params);
    if (this.mode === "closed") return;
    if (decision && decision.code >= 400) return this.error(decision);
    // A BDAT refused before this MAIL (RFC 3030 §2: "503" for BDAT without
    // MAIL) left its failure behind; this transaction starts clean.
    this.resetTransaction();
    this.mailFrom = path.mailbox;
    this.mailParams = params;
    this.recipients = [];
    this.reply(decision ?? R.mailOk);
  }

  private async rcpt(arg: string): Promise<void> {
    if (this.mailFrom === undefined || this.mailParams === null) return this.error(R.needMail);
    if (this.bdatStarted) return this.error(R.badSequence("RCPT after BDAT"));
    const text = afterKeyword(arg, "TO:");
    if (text === null) return this.error(R.syntax("RCPT TO:<address>"));
    const path = parsePath(text, { allowUtf8: true, allowNull: false });
    if (!path.ok || path.mailbox === null) return this.error(R.badAddress(path.ok ? "null address" : path.reason));
    const parsed = parseRcptParameters(path.rest, { dsn: this.esmtp });
    if (!parsed.ok) return this.error(reply(parsed.code, parsed.status, parsed.text));
    if (!this.mailParams.smtputf8 && !isAscii(path.mailbox.localPart + path.mailbox.domain)) {
      return this.error(R.needSmtputf8);
    }
    // RFC 5321 §4.5.3.1.10: the client is expected to send the rest in a later
    // transaction; this is not a client error (Postfix does not count it
    // either, up to smtpd_recipient_overshoot_limit), or a client with more
    // recipients than the limit would be cut off by the error limit.
    if (this.recipients.length >= this.opts.limits.recipients) return this.reply(R.tooManyRecipients);
    const decision = await this.handler.rcpt(this.state, this.transaction(), path.mailbox, parsed.params);
    if (this.mode === "closed") return;
    if (decision && decision.code >= 400) return this.error(decision);
    this.recipients.push({ mailbox: path.mailbox, params: parsed.params });
    this.reply(decision ?? R.rcptOk);
  }

  private async data(arg: string): Promise<void> {
    if (arg.trim() !== "") return this.error(R.syntax("DATA"));
    if (this.mailFrom === undefined) return this.error(R.needMail);
    if (this.bdatStarted) return this.error(R.badSequence("DATA after BDAT"));
    if (this.recipients.length === 0) return this.error(R.needRcpt);
    // RFC 2920 §3.1: DATA ends a command group; a client that sends the body
    // before our 354 is not waiting for replies (SMTP smuggling, spam bots).
    if (this.pipelinedAfter()) return;
    const opened = await this.handler.openMessage(this.state, this.transaction());
    if (this.mode === "closed") {
      if (!("code" in opened)) await opened.abort();
      return;
    }
    if ("code" in opened) {
      // The message cannot be taken (e.g. 451 storage failure): the
      // transaction is over, so the client can start again without RSET.
      this.resetTransaction();
      return this.error(opened);
    }
    this.sink = opened;
    this.decoder = new DataDecoder(this.opts.bareNewline);
    this.messageBytes = 0;
    this.messageTooBig = false;
    this.mode = "data";
    this.reply(R.startData);
  }

  private async bdat(arg: string): Promise<void> {
    const m = /^(\d{1,15})(?: +(LAST))? *$/i.exec(arg);
    if (!m) {
      // We cannot know how many octets follow; the chunk will be read as
      // commands and fail, and the error limit ends the session.
      return this.error(R.syntax("BDAT chunk-size [LAST]"));
    }
    this.bdatRemaining = Number(m[1]);
    this.bdatLast = m[2] !== undefined;
    this.mode = "bdat";
    // RFC 3030 §2: the chunk is read even when the command is refused.
    if (this.bdatFailure === null) {
      if (this.mailFrom === undefined) this.bdatFailure = R.needMail;
      else if (this.recipients.length === 0) this.bdatFailure = R.needRcpt;
      else if (!this.bdatStarted) {
        const opened = await this.handler.openMessage(this.state, this.transaction());
        if (this.isClosed()) {
          if (!("code" in opened)) await opened.abort();
          return;
        }
        if ("code" in opened) this.bdatFailure = opened;
        else {
          this.sink = opened;
          this.normalizer = new LineEndNormalizer(this.opts.bareNewline);
          this.messageBytes = 0;
          this.messageTooBig = false;
        }
      }
      this.bdatStarted = true;
    }
    if (this.bdatRemaining === 0) await this.bdatChunkDone();
  }

  private rset(arg: string): void {
    if (arg.trim() !== "") return this.error(R.syntax("RSET"));
    void this.abortMessage();
    this.resetTransaction();
    this.reply(R.ok);
  }

  private quit(): void {
    this.send(R.bye(this.opts.hostname));
    this.close();
  }

  private startTls(arg: string): void {
    if (arg.trim() !== "") return this.error(R.syntax("STARTTLS"));
    if (this.tls !== null) return this.error(R.alreadyTls);
    if (!this.opts.startTlsAvailable) return this.error(R.notImplemented("STARTTLS"));
    if (this.mailFrom !== undefined) return this.error(R.transactionInProgress);
    // RFC 3207 §4.2 / CVE-2011-0411: anything pipelined after STARTTLS was
    // sent in plaintext and must not be executed once TLS is up.
    const discarded = this.queued;
    this.queue.length = 0;
    this.queued = 0;
    this.handler.event?.("tls-requested", discarded > 0 ? { discarded } : undefined);
    this.send(R.readyForTls);
    this.flush();
    this.mode = "tls-pending";
    this.transport.startTls();
  }

  // ----------------------------------------------------------------- AUTH

  private async authCommand(arg: string): Promise<void> {
    if (this.opts.authMechanisms.length === 0 || !this.handler.startAuth) return this.error(R.authNotEnabled);
    if (this.tls === null) return this.error(R.encryptionRequired);
    if (this.helo === null) return this.error(R.needHelo);
    if (this.authUser !== null) return this.error(R.alreadyAuthenticated);
    if (this.mailFrom !== undefined) return this.error(R.transactionInProgress);
    const parts = arg.trim().split(/ +/);
    if (parts[0] === "" || parts.length > 2) return this.error(R.syntax("AUTH mechanism [initial-response]"));
    const mechanism = parts[0].toUpperCase();
    if (!this.opts.authMechanisms.includes(mechanism)) return this.error(R.unknownMechanism);
    const exchange = this.handler.startAuth(this.state, mechanism);
    if (!exchange) return this.error(R.unknownMechanism);
    let initial: Buffer | null = null;
    if (parts.length === 2) {
      // RFC 4954 §4: "=" is an empty initial response.
      const decoded = parts[1] === "=" ? Buffer.alloc(0) : decodeBase64(parts[1]);
      if (decoded === null) return this.error(R.cannotDecode);
      initial = decoded;
    }
    this.auth = exchange;
    this.mode = "auth";
    await this.authStep(initial);
  }

  private async authLine(raw: Buffer): Promise<void> {
    if (lineEndProblem(raw)) {
      this.endAuth();
      return this.error(R.bareLf);
    }
    const text = raw.subarray(0, raw.length - 2).toString("latin1").trim();
    if (text === "*") {
      this.endAuth();
      return this.error(R.authCancelled);
    }
    const decoded = decodeBase64(text);
    if (decoded === null) {
      this.endAuth();
      return this.error(R.cannotDecode);
    }
    await this.authStep(decoded);
  }

  private pendingSuccess: string | null = null;

  private async authStep(response: Buffer | null): Promise<void> {
    if (this.pendingSuccess !== null) {
      // RFC 4954 §4: additional data with success went out as a 334
      // challenge; the client answers it with an empty response.
      const user = this.pendingSuccess;
      this.pendingSuccess = null;
      if (response !== null && response.length > 0) return this.authFailure("malformed");
      return this.authSuccess(user);
    }
    const exchange = this.auth!;
    const result = await exchange.step(response);
    if (this.mode === "closed") return;
    if (result.kind === "challenge") {
      this.send(reply(334, undefined, result.data.toString("base64")));
      return;
    }
    if (result.kind === "success") {
      if (result.data && result.data.length > 0) {
        this.pendingSuccess = result.user;
        this.send(reply(334, undefined, result.data.toString("base64")));
        return;
      }
      return this.authSuccess(result.user);
    }
    return this.authFailure(result.reason);
  }

  private authSuccess(user: string): void {
    this.endAuth();
    this.authUser = user;
    this.handler.event?.("auth-success", { user });
    this.reply(R.authOk);
  }

  private authFailure(reason: string): void {
    this.endAuth();
    this.handler.event?.("auth-failure", { reason });
    const disconnect = this.handler.authFailed?.(this.state) ?? false;
    this.error(reason === "malformed" ? R.authMalformed : R.authFailed);
    if (disconnect && this.mode !== "closed") {
      this.send(R.tooManyAuthFailures);
      this.close();
    }
  }

  private endAuth(): void {
    this.auth = null;
    this.pendingSuccess = null;
    if (this.mode === "auth") this.mode = "command";
  }

  // ----------------------------------------------------------- message body

  private async dataInput(): Promise<void> {
    const chunk = this.shift();
    const decoded = this.decoder!.feed(chunk);
    await this.writeContent(decoded.content);
    // The connection may have gone while the sink was writing: the message
    // was aborted by closed(); do not come back to life as "command".
    if (!decoded.done || this.isClosed()) return;
    this.unshift(decoded.rest);
    this.mode = "command";
    const decoder = this.decoder!;
    this.decoder = null;
    if (this.opts.bareNewline === "reject" && decoder.bareNewlineSeen) {
      await this.abortMessage();
      this.resetTransaction();
      this.handler.event?.("message-refused", { reason: "bare newline" });
      return this.error(R.bareNewlineInData);
    }
    await this.finishMessage();
  }

  private async bdatInput(): Promise<void> {
    if (this.bdatRemaining > 0) {
      let chunk = this.shift();
      if (chunk.length > this.bdatRemaining) {
        this.unshift(chunk.subarray(this.bdatRemaining));
        chunk = chunk.subarray(0, this.bdatRemaining);
      }
      this.bdatRemaining -= chunk.length;
      if (this.bdatFailure === null && this.normalizer) await this.writeContent(this.normalizer.feed(chunk));
      if (this.isClosed()) return;
    }
    if (this.bdatRemaining === 0) await this.bdatChunkDone();
  }

  private async bdatChunkDone(): Promise<void> {
    this.mode = "command";
    if (this.bdatFailure !== null) {
      const failure = this.bdatFailure;
      if (this.bdatLast) {
        await this.abortMessage();
        this.resetTransaction();
      }
      return this.error(failure);
    }
    if (this.messageTooBig) {
      // RFC 3030 §2: refuse now; the transaction stays failed until LAST or RSET.
      await this.abortMessage();
      this.bdatFailure = R.sizeExceeded(this.opts.limits.messageSize);
      if (this.bdatLast) this.resetTransaction();
      return this.error(R.sizeExceeded(this.opts.limits.messageSize));
    }
    if (!this.bdatLast) {
      return this.reply(reply(250, "2.0.0", `${this.messageBytes} octets received`));
    }
    const normalizer = this.normalizer!;
    await this.writeContent(normalizer.finish());
    if (this.isClosed()) return;
    if (this.opts.bareNewline === "reject" && normalizer.bareNewlineSeen) {
      await this.abortMessage();
      this.resetTransaction();
      return this.error(R.bareNewlineInData);
    }
    await this.finishMessage();
  }

  private async writeContent(parts: Buffer[]): Promise<void> {
    for (const part of parts) {
      if (this.messageTooBig) return;
      this.messageBytes += part.length;
      if (this.messageBytes > this.opts.limits.messageSize) {
        // Enforced while the message streams in (RFC 1870 §6): stop storing,
        // keep reading to the end, then answer 552.
        this.messageTooBig = true;
        await this.abortSink();
        return;
      }
      const pending = this.sink?.write(part);
      if (pending) await pending;
    }
  }

  private async finishMessage(): Promise<void> {
    if (this.messageTooBig) {
      this.resetTransaction();
      this.handler.event?.("message-refused", { reason: "size" });
      return this.error(R.sizeExceeded(this.opts.limits.messageSize));
    }
    const sink = this.sink!;
    this.sink = null;
    const final = await sink.end();
    this.resetTransaction();
    if (final.code < 400) {
      this.transactions++;
      // Postfix smtpd_hard_error_limit counts errors "without delivering mail".
      this.errors = 0;
      this.handler.event?.("message-accepted");
      this.reply(final);
    } else {
      this.error(final);
    }
  }

  private async abortSink(): Promise<void> {
    const sink = this.sink;
    this.sink = null;
    if (sink) await sink.abort();
  }

  private async abortMessage(): Promise<void> {
    this.decoder = null;
    this.normalizer = null;
    await this.abortSink();
  }

  // --------------------------------------------------------------- helpers

  private transaction(): Transaction {
    return { mailFrom: this.mailFrom ?? null, mailParams: this.mailParams!, recipients: this.recipients };
  }

  private resetTransaction(): void {
    this.mailFrom = undefined;
    this.mailParams = null;
    this.recipients = [];
    this.bdatStarted = false;
    this.bdatFailure = null;
    this.bdatLast = false;
    this.messageTooBig = false;
    this.messageBytes = 0;
  }

  /**
   * Postfix's pipelining check: an unauthenticated client that sent more
   * commands after one that ends a command group (RFC 2920 §3.1: EHLO, HELO,
   * DATA …) did not wait for the reply it needed. Refuse and drop them.
   */
  private pipelinedAfter(): boolean {
    if (this.queued === 0 || this.authUser !== null) return false;
    this.handler.event?.("pipelining-violation", { pending: this.queued });
    this.queue.length = 0;
    this.queued = 0;
    this.error(R.improperPipelining);
    return true;
  }

  private send(r: Reply): void {
    if (this.mode === "closed") return;
    this.out += serializeReply(r);
    this.handler.event?.("reply", { code: r.code });
  }

  private reply(r: Reply): void {
    this.send(r);
  }

  /** A 4xx/5xx reply counts toward the error limits (Postfix smtpd_*_error_limit). */
  private error(r: Reply): void {
    this.send(r);
    this.errors++;
    if (this.errors >= this.opts.limits.hardErrors) {
      this.send(R.tooManyErrors);
      this.close();
    }
  }

  private flush(): void {
    if (this.out.length === 0) return;
    const data = this.out;
    this.out = "";
    this.transport.write(data);
  }

  private close(): void {
    if (this.mode === "closed") return;
    this.flush();
    this.mode = "closed";
    this.queue.length = 0;
    this.queued = 0;
    void this.abortMessage();
    this.handler.event?.("closed");
    this.transport.close();
  }

  private isClosed(): boolean {
    return this.mode === "closed";
  }

  /** Whether replies should be slowed down (soft error limit passed). */
  get overSoftErrorLimit(): boolean {
    return this.errors >= this.opts.limits.softErrors;
  }
}

function lineEndProblem(line: Buffer): "bare LF" | "bare CR" | null {
  const n = line.length;
  if (n < 2 || line[n - 2] !== CR) return "bare LF";
  const cr = line.indexOf(CR);
  if (cr !== n - 2) return "bare CR";
  return null;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64(s: string): Buffer | null {
  if (s.length % 4 !== 0 || !BASE64.test(s)) return null;
  return Buffer.from(s, "base64");
}

function looksLikeHttp(verb: string): boolean {
  return verb === "GET" || verb === "POST" || verb === "PUT" || verb === "HEAD" || verb === "CONNECT" || verb === "OPTIONS";
}
