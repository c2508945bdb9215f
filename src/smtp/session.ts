import { reply } from "./reply.ts";
import * as R from "./replies.ts";
import type { SessionHandler, SessionState, SessionTransport } from "./session-handler.ts";
import type { SessionOptions } from "./session-options.ts";
import { SessionContext } from "./session-context.ts";
import { dispatch } from "./command-table.ts";
import { authResponse, endAuth } from "./auth-command.ts";
import { bdatInput, dataInput } from "./message-commands.ts";
import { ehloKeywords } from "./extensions.ts";

export type { SessionLimits, SessionOptions } from "./session-options.ts";
export { MAX_UNTERMINATED_LINE } from "./line-framer.ts";

/**
 * The SMTP server protocol engine for one connection (RFC 5321 and the
 * extensions Petrel advertises). Bytes go in through `receive()`, replies
 * come out through the transport; decisions and storage are asked of the
 * handler. Nothing here touches a socket, a file or the clock.
 *
 * This class is the engine's face and its input pump; the parts behind it
 * are the line framer (line-framer.ts), the command table and its commands
 * (command-table.ts), the AUTH exchange (auth-command.ts, auth-driver.ts),
 * the message receiver for DATA and BDAT (message-commands.ts,
 * message-receiver.ts) and the reply and error accounting (reply-output.ts),
 * sharing one SessionContext.
 */
export class Session {
  private readonly ctx: SessionContext;
  /** The pump is working through the input (it may be waiting on the handler). */
  private running = false;
  /** The transport was told to stop reading (back-pressure). */
  private paused = false;
  private started = false;
  private earlyTalker = false;
  private seenInput = false;
  /** closed() ran: the handler was told once. */
  private ended = false;

  constructor(opts: SessionOptions, handler: SessionHandler, transport: SessionTransport) {
    this.ctx = new SessionContext(opts, handler, transport);
  }

  get state(): SessionState {
    return this.ctx.state;
  }

  /** What the connection is waiting for, so it can pick the right timeout. */
  get phase(): "command" | "data" | "closed" {
    const mode = this.ctx.mode;
    if (mode === "closed") return "closed";
    return mode === "data" || mode === "bdat" ? "data" : "command";
  }

  /** True while a message is being received or stored (graceful shutdown waits for it). */
  get inTransaction(): boolean {
    return this.ctx.inTransaction;
  }

  /** Whether replies should be slowed down (soft error limit passed). */
  get overSoftErrorLimit(): boolean {
    return this.ctx.replies.overSoftLimit;
  }

  /** EHLO keywords (RFC 5321 §4.1.1.1): exactly what this session implements now. */
  capabilities(): string[] {
    return ehloKeywords(this.ctx.extensionView);
  }

  /** Send the greeting (after the connection's optional greeting delay). */
  start(): void {
    const ctx = this.ctx;
    this.started = true;
    if (this.earlyTalker) {
      // Postfix's "improper command pipelining after CONNECT": a client that
      // talks before the greeting is not speaking SMTP (RFC 5321 §4.3.1).
      ctx.input.clear();
      ctx.event("pipelining-violation", { when: "before greeting" });
      ctx.send(R.earlyTalker);
      ctx.close();
      return;
    }
    ctx.send(reply(220, undefined, `${ctx.opts.hostname} ${ctx.opts.banner}`));
    ctx.flush();
    if (this.queued > 0) void this.pump();
  }

  /** Bytes from the client. */
  receive(chunk: Buffer): void {
    const ctx = this.ctx;
    if (ctx.mode === "closed" || ctx.mode === "tls-pending" || chunk.length === 0) return;
    if (!this.started) {
      this.earlyTalker = true;
      return;
    }
    if (!this.seenInput) {
      this.seenInput = true;
      // A TLS ClientHello (record type 22, version 3.x) on a plaintext port:
      // the client wanted port 465 or forgot STARTTLS. Say so and close.
      // (0x16 never starts an SMTP command, so one byte is enough to tell.)
      if (chunk[0] === 0x16 && (chunk.length === 1 || chunk[1] === 0x03) && ctx.tls === null) {
        ctx.event("protocol-error", { problem: "tls on plaintext port" });
        ctx.send(R.notSmtp);
        ctx.close();
        return;
      }
    }
    ctx.input.push(chunk);
    if (this.running) {
      if (ctx.input.aboveHighWater && !this.paused) {
        this.paused = true;
        ctx.transport.pause();
      }
      return;
    }
    void this.pump();
  }

  /** The TLS handshake after STARTTLS completed (RFC 3207 §4.2: forget everything). */
  tlsEstablished(info: { version: string; cipher: string }): void {
    const ctx = this.ctx;
    if (ctx.mode !== "tls-pending") return;
    ctx.tls = { ...info };
    ctx.helo = null;
    ctx.esmtp = false;
    ctx.authUser = null;
    ctx.resetTransaction();
    ctx.mode = "command";
  }

  /** The connection is gone (or is being closed by the server). */
  async closed(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.ctx.mode = "closed";
    this.ctx.input.clear();
    await this.ctx.abortMessage();
    await this.ctx.handler.close?.();
  }

  /** The server is shutting down or a timeout fired: say 421 and close (RFC 5321 §3.8). */
  shutdown(text: string, status = "4.3.2"): void {
    const ctx = this.ctx;
    if (ctx.mode === "closed") return;
    ctx.send(reply(421, status, `${ctx.opts.hostname} ${text}`));
    ctx.close();
  }

  /** Octets received and not yet consumed. */
  private get queued(): number {
    return this.ctx.input.queued;
  }

  private get reading(): boolean {
    return this.ctx.mode !== "closed" && this.ctx.mode !== "tls-pending";
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const ctx = this.ctx;
    try {
      while (this.queued > 0 && this.reading) {
        // A step the handler answers at once is taken without a microtask turn.
        const step = this.step();
        const progressed = typeof step === "boolean" ? step : await step;
        if (!progressed) break;
      }
    } catch (err) {
      // An exception here is a bug; never let it take the process down.
      ctx.event("protocol-error", { error: String(err) });
      ctx.send(R.localError);
      ctx.close();
    } finally {
      this.running = false;
      ctx.flush();
      if (this.paused && ctx.input.belowLowWater) {
        this.paused = false;
        ctx.transport.resume();
      }
    }
    if (this.queued > 0 && !this.running && this.reading && this.canProgress()) {
      void this.pump();
    }
  }

  /** Commands and AUTH responses wait for a whole line; message data is always consumed. */
  private canProgress(): boolean {
    const mode = this.ctx.mode;
    if (mode !== "command" && mode !== "auth") return true;
    return this.ctx.input.canProgress(mode);
  }

  /** One line or one chunk of input; a promise only when the handler has not answered yet. */
  private step(): boolean | Promise<boolean> {
    const ctx = this.ctx;
    switch (ctx.mode) {
      case "command":
      case "auth": {
        const line = ctx.input.takeLine(ctx.mode);
        if (line === null) return false;
        if (line === "never ends") {
          ctx.event("line-too-long", { unterminated: true });
          ctx.send(R.lineNeverEnds);
          ctx.close();
          return true;
        }
        if (line === "too long") {
          ctx.event("line-too-long", {});
          // RFC 4954 §4: a response longer than the server's buffer fails the AUTH command.
          endAuth(ctx);
          ctx.error(R.lineTooLong);
          return true;
        }
        // Postfix smtpd_error_sleep_time: past the soft limit every reply is slowed.
        if (ctx.replies.overSoftLimit && ctx.opts.errorDelay) return this.slowedStep(line);
        return done(ctx.mode === "auth" ? authResponse(ctx, line) : dispatch(ctx, line));
      }
      case "data":
        return done(dataInput(ctx));
      case "bdat":
        return done(bdatInput(ctx));
      default:
        return false;
    }
  }

  private async slowedStep(line: Buffer): Promise<boolean> {
    const ctx = this.ctx;
    ctx.flush();
    await ctx.opts.errorDelay!();
    if (ctx.closed) return false;
    if (ctx.mode === "auth") await authResponse(ctx, line);
    else await dispatch(ctx, line);
    return true;
  }
}

/** The step made progress once `work` is done: at once when it already is. */
function done(work: void | Promise<void>): boolean | Promise<boolean> {
  return work === undefined ? true : work.then(() => true);
}
