/**
 * The LMTP delivery agent (RFC 2033): hands a message to a local mail store
 * (Dovecot, Cyrus, ...) over TCP or a UNIX-domain socket.
 *
 *   LHLO → MAIL FROM (with SIZE, BODY=8BITMIME, SMTPUTF8 only when the server
 *   advertised them) → RCPT TO per recipient, each with its own reply → DATA,
 *   the dot-stuffed body (src/smtp/dot-stuffing.ts) → after the final dot, ONE
 *   reply per accepted recipient, in RCPT order (RFC 2033 §4.2) → QUIT.
 *
 * Each recipient's outcome follows its own reply: 2xx delivered, 4xx
 * deferred, 5xx failed, with the server's reply as the diagnostic and its
 * enhanced status code (or X.0.0 when it gave none). Trouble with the
 * connection itself defers every recipient still open: 4.4.1 when it cannot
 * be made, 4.4.2 when it is lost or times out. Timeouts follow RFC 5321
 * §4.5.3.2 and are all options.
 */
import { createConnection, type Socket } from "node:net";
import type { DeliveryAgent, DeliveryOutcome, DeliveryRequest } from "./outcome.ts";
import type { Reply } from "../smtp/reply.ts";
import { DotStuffer } from "../smtp/dot-stuffing.ts";

/** Milliseconds to wait at each stage. Defaults are RFC 5321 §4.5.3.2's (connect and QUIT: Postfix-like). */
export interface LmtpTimeouts {
  readonly connect: number;
  readonly greeting: number;
  readonly lhlo: number;
  readonly mail: number;
  readonly rcpt: number;
  readonly dataInit: number;
  /** Each write of the body that has to wait for the socket to drain. */
  readonly dataBlock: number;
  /** Each per-recipient reply after the final dot. */
  readonly dataTermination: number;
  readonly quit: number;
}

export const DEFAULT_LMTP_TIMEOUTS: LmtpTimeouts = {
  connect: 30_000,
  greeting: 5 * 60_000,
  lhlo: 5 * 60_000,
  mail: 5 * 60_000,
  rcpt: 5 * 60_000,
  dataInit: 2 * 60_000,
  dataBlock: 3 * 60_000,
  dataTermination: 10 * 60_000,
  quit: 10_000,
};

export type LmtpTarget = { readonly host: string; readonly port: number } | { readonly path: string };

export interface LmtpAgentOptions {
  /** Where the LMTP server listens: TCP host and port, or a UNIX socket path. */
  readonly target: LmtpTarget;
  /** Our name for LHLO. */
  readonly lhloName: string;
  readonly timeouts?: Partial<LmtpTimeouts>;
  /** Longest reply line accepted from the server (default 64 KiB). */
  readonly maxReplyLine?: number;
}

/**
 * A delivery request that may know its exact message size (octets, CRLF line
 * ends), sent as SIZE= when the server advertises SIZE.
 */
export type SizedDeliveryRequest = DeliveryRequest & { readonly size?: number };

/** Why a conversation ended early. */
class SessionError extends Error {
  readonly outcome: DeliveryOutcome;
  constructor(outcome: DeliveryOutcome) {
    super(outcome.status === "delivered" ? "delivered" : outcome.diagnostic);
    this.outcome = outcome;
  }
}

export class LmtpAgent implements DeliveryAgent {
  private readonly options: LmtpAgentOptions;
  private readonly timeouts: LmtpTimeouts;
  private readonly where: string;

  constructor(options: LmtpAgentOptions) {
    this.options = options;
    this.timeouts = { ...DEFAULT_LMTP_TIMEOUTS, ...options.timeouts };
    const t = options.target;
    this.where = "path" in t ? t.path : `[${t.host}]:${t.port}`;
  }

  async deliver(request: SizedDeliveryRequest): Promise<DeliveryOutcome[]> {
    const n = request.recipients.length;
    const outcomes: (DeliveryOutcome | undefined)[] = new Array(n).fill(undefined);
    if (n === 0) return [];
    let conn: Connection | undefined;
    let stage = "connecting";
    try {
      conn = await Connection.open(this.options.target, this.timeouts.connect, this.where, this.options.maxReplyLine ?? 65536);

      stage = "waiting for the greeting";
      const greeting = await conn.reply(this.timeouts.greeting, stage);
      if (greeting.code !== 220) throw new SessionError(replyOutcome(greeting, this.where, "greeting"));

      stage = "sending LHLO";
      conn.send(`LHLO ${this.options.lhloName}\r\n`);
      const lhlo = await conn.reply(this.timeouts.lhlo, stage);
      if (lhlo.code !== 250) throw new SessionError(replyOutcome(lhlo, this.where, "LHLO"));
      const ext = extensions(lhlo);

      const env = request.envelope;
      const needUtf8 = env.smtputf8 && (!isAscii(env.mailFrom) || request.recipients.some((r) => !isAscii(r)));
      const useUtf8 = env.smtputf8 && ext.has("SMTPUTF8");
      if (needUtf8 && !useUtf8 && !isAscii(env.mailFrom)) {
        throw new SessionError({ status: "failed", enhanced: "5.6.7", diagnostic: `${this.where} does not support SMTPUTF8, needed for the sender ${env.mailFrom}`, remoteMta: this.where });
      }
      let params = "";
      if (ext.has("SIZE") && request.size !== undefined) params += ` SIZE=${request.size}`;
      if (ext.has("8BITMIME") && env.body !== undefined) params += ` BODY=${env.body}`;
      if (useUtf8) params += " SMTPUTF8";

      stage = "sending MAIL FROM";
      conn.send(`MAIL FROM:<${env.mailFrom}>${params}\r\n`);
      const mail = await conn.reply(this.timeouts.mail, stage);
      if (mail.code < 200 || mail.code > 299) throw new SessionError(replyOutcome(mail, this.where, "MAIL FROM"));

      const accepted: number[] = [];
      for (let i = 0; i < n; i++) {
        const rcpt = request.recipients[i];
        if (!useUtf8 && !isAscii(rcpt)) {
          outcomes[i] = { status: "failed", enhanced: "5.6.7", diagnostic: `${this.where} does not support SMTPUTF8, needed for the recipient ${rcpt}`, remoteMta: this.where };
          continue;
        }
        stage = `sending RCPT TO:<${rcpt}>`;
        conn.send(`RCPT TO:<${rcpt}>\r\n`);
        const r = await conn.reply(this.timeouts.rcpt, stage);
        if (r.code >= 200 && r.code <= 299) accepted.push(i);
        else outcomes[i] = replyOutcome(r, this.where, "RCPT TO");
      }

      if (accepted.length > 0) {
        stage = "sending DATA";
        conn.send("DATA\r\n");
        const data = await conn.reply(this.timeouts.dataInit, stage);
        if (data.code !== 354) {
          const o = replyOutcome(data, this.where, "DATA");
          for (const i of accepted) outcomes[i] = o;
        } else {
          stage = "sending the message body";
          await this.sendBody(conn, request, stage);
          for (const i of accepted) {
            stage = `waiting for the reply for <${request.recipients[i]}> after the end of data`;
            const r = await conn.reply(this.timeouts.dataTermination, stage);
            outcomes[i] = r.code >= 200 && r.code <= 299
              ? { status: "delivered", detail: `${this.where} said: ${replyText(r)}` }
              : replyOutcome(r, this.where, "end of data");
          }
        }
      }
      stage = "sending QUIT";
      await conn.quit(this.timeouts.quit);
    } catch (err) {
      const o = err instanceof SessionError
        ? err.outcome
        : { status: "deferred" as const, enhanced: "4.4.2", diagnostic: `${this.where}: ${err instanceof Error ? err.message : String(err)} while ${stage}`, remoteMta: this.where };
      for (let i = 0; i < n; i++) if (outcomes[i] === undefined) outcomes[i] = o;
      if (conn && !conn.closed && !(err instanceof ConnectionError) && !(err instanceof BodyError)) await conn.quit(this.timeouts.quit);
    } finally {
      conn?.destroy();
    }
    return outcomes as DeliveryOutcome[];
  }

  private async sendBody(conn: Connection, request: DeliveryRequest, stage: string): Promise<void> {
    const stuffer = new DotStuffer();
    let body;
    try {
      body = request.body();
    } catch (err) {
      throw new BodyError(request.queueId, err);
    }
    const it = body[Symbol.asyncIterator]();
    try {
      for (;;) {
        let next: IteratorResult<unknown>;
        try {
          next = await it.next();
        } catch (err) {
          throw new BodyError(request.queueId, err);
        }
        if (next.done) break;
        const chunk = next.value;
        const buf = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
        for (const b of stuffer.encode(buf)) await conn.write(b, this.timeouts.dataBlock, stage);
      }
    } finally {
      body.destroy();
    }
    await conn.write(stuffer.end(), this.timeouts.dataBlock, stage);
  }
}

/** The spooled message could not be read: the conversation is abandoned (no final dot) and every open recipient deferred. */
class BodyError extends SessionError {
  constructor(queueId: string, cause: unknown) {
    super({
      status: "deferred",
      enhanced: "4.3.0",
      diagnostic: `cannot read queued message ${queueId}: ${cause instanceof Error ? cause.message : String(cause)}`,
    });
  }
}

/** The connection failed (refused, lost, timed out): every open recipient is deferred with this outcome. */
class ConnectionError extends SessionError {}

function isAscii(s: string): boolean {
  return /^[\x00-\x7f]*$/.test(s);
}

/** LHLO reply lines after the first: the extension keywords, upper-cased. */
function extensions(r: Reply): Set<string> {
  const set = new Set<string>();
  for (const line of r.lines.slice(1)) {
    const kw = line.trim().split(/\s+/)[0];
    if (kw) set.add(kw.toUpperCase());
  }
  return set;
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)/;

/** Parse the enhanced status code at the start of a reply's first line (RFC 2034), if its class matches the code's. */
export function enhancedCode(r: Reply): string | undefined {
  const m = ENHANCED.exec(r.lines[0] ?? "");
  if (!m || Number(m[1]) !== Math.floor(r.code / 100)) return undefined;
  return `${m[1]}.${m[2]}.${m[3]}`;
}

/** The reply as one line for a diagnostic: "550 5.1.1 <x@y> User doesn't exist". */
export function replyText(r: Reply): string {
  const parts = r.lines.map((l, i) => (i === 0 ? l : l.replace(ENHANCED, "").trim()));
  return `${r.code} ${parts.join(" ")}`.trim();
}

/** Map a non-success reply to an outcome: 4xx deferred, 5xx failed, anything else unexpected (deferred 4.5.0). */
export function replyOutcome(r: Reply, where: string, after: string): DeliveryOutcome {
  const text = `${where} said: ${replyText(r)} (in reply to ${after})`;
  const cls = Math.floor(r.code / 100);
  if (cls === 4) return { status: "deferred", enhanced: enhancedCode(r) ?? "4.0.0", diagnostic: text, remoteMta: where };
  if (cls === 5) return { status: "failed", enhanced: enhancedCode(r) ?? "5.0.0", diagnostic: text, remoteMta: where };
  return { status: "deferred", enhanced: "4.5.0", diagnostic: `${text}: unexpected reply`, remoteMta: where };
}

/** One LMTP connection: sends command lines, reads replies, with a timeout for each wait. */
class Connection {
  private readonly socket: Socket;
  private readonly where: string;
  private readonly maxLine: number;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private lines: string[] = [];
  private readonly replies: Reply[] = [];
  private failure: Error | undefined;
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(socket: Socket, where: string, maxLine: number) {
    this.socket = socket;
    this.where = where;
    this.maxLine = maxLine;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.fail(new Error(`connection error: ${err.message}`)));
    socket.on("close", () => {
      this.closed = true;
      this.fail(new Error("lost connection"));
    });
  }

  static open(target: LmtpTarget, timeout: number, where: string, maxLine: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = "path" in target ? createConnection({ path: target.path }) : createConnection({ host: target.host, port: target.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectionError({ status: "deferred", enhanced: "4.4.1", diagnostic: `connect to ${where}: timed out after ${timeout} ms`, remoteMta: where }));
      }, timeout);
      const onError = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new ConnectionError({ status: "deferred", enhanced: "4.4.1", diagnostic: `connect to ${where}: ${err.message}`, remoteMta: where }));
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", onError);
        if ("host" in target) socket.setNoDelay(true);
        resolve(new Connection(socket, where, maxLine));
      });
    });
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private onData(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const lf = chunk.indexOf(0x0a, pos);
      if (lf === -1) {
        this.pending.push(chunk.subarray(pos));
        this.pendingLen += chunk.length - pos;
        if (this.pendingLen > this.maxLine) {
          this.fail(new Error(`reply line longer than ${this.maxLine} octets`));
          this.socket.destroy();
        }
        break;
      }
      let line = chunk.subarray(pos, lf);
      if (this.pending.length > 0) {
        line = Buffer.concat([...this.pending, line]);
        this.pending = [];
        this.pendingLen = 0;
      }
      pos = lf + 1;
      this.onLine(line.toString("utf8").replace(/\r$/, ""));
    }
    this.wake();
  }

  private onLine(line: string): void {
    const m = /^(\d{3})([ -]?)(.*)$/.exec(line);
    if (!m || (this.lines.length > 0 && !line.startsWith(this.lines[0].slice(0, 3)))) {
      this.fail(new Error(`malformed reply line ${JSON.stringify(line.slice(0, 200))}`));
      this.socket.destroy();
      return;
    }
    this.lines.push(line);
    if (m[2] !== "-") {
      this.replies.push({ code: Number(m[1]), lines: this.lines.map((l) => l.slice(4)) });
      this.lines = [];
    } else if (this.lines.length > 1000) {
      this.fail(new Error("reply with more than 1000 lines"));
      this.socket.destroy();
    }
  }

  send(line: string): void {
    if (!this.closed) this.socket.write(line);
  }

  /** Write body bytes, waiting (up to `timeout`) when the socket buffer is full. */
  async write(data: Buffer, timeout: number, stage: string): Promise<void> {
    if (this.failure) throw this.connectionError(this.failure, stage);
    if (this.socket.write(data)) return;
    await this.waitFor(() => this.socket.writableNeedDrain === false, timeout, stage, "drain");
  }

  /** The next reply; replies that arrive early are queued. */
  async reply(timeout: number, stage: string): Promise<Reply> {
    await this.waitFor(() => this.replies.length > 0, timeout, stage, "data");
    return this.replies.shift()!;
  }

  private waitFor(ready: () => boolean, timeout: number, stage: string, event: "data" | "drain"): Promise<void> {
    if (ready()) return Promise.resolve();
    if (this.failure) return Promise.reject(this.connectionError(this.failure, stage));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new ConnectionError({ status: "deferred", enhanced: "4.4.2", diagnostic: `conversation with ${this.where} timed out while ${stage}`, remoteMta: this.where }));
      }, timeout);
      const check = () => {
        if (ready()) {
          cleanup();
          resolve();
        } else if (this.failure) {
          cleanup();
          reject(this.connectionError(this.failure, stage));
        } else {
          this.waiter = check;
        }
      };
      const onDrain = () => check();
      const cleanup = () => {
        clearTimeout(timer);
        this.waiter = undefined;
        if (event === "drain") this.socket.off("drain", onDrain);
      };
      if (event === "drain") this.socket.on("drain", onDrain);
      this.waiter = check;
    });
  }

  private connectionError(err: Error, stage: string): ConnectionError {
    return new ConnectionError({ status: "deferred", enhanced: "4.4.2", diagnostic: `${err.message} with ${this.where} while ${stage}`, remoteMta: this.where });
  }

  /** Say QUIT and wait briefly for the 221; problems here change nothing. */
  async quit(timeout: number): Promise<void> {
    if (this.closed || this.failure) return;
    this.send("QUIT\r\n");
    try {
      await this.reply(timeout, "sending QUIT");
    } catch {
      // The outcomes are already decided.
    }
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
