/**
 * A byte-level harness for the SMTP protocol engine: a fake transport that
 * collects what the engine writes, a scriptable handler, and `converse()`,
 * which feeds bytes and waits (microtasks and setImmediate turns, never a
 * timer) until the engine has nothing more to say.
 */
import { Session, type SessionLimits, type SessionOptions } from "../../src/smtp/session.ts";
import { reply, type Reply } from "../../src/smtp/reply.ts";
import type { Mailbox } from "../../src/mail/envelope.ts";
import type { MailParameters, RcptParameters } from "../../src/smtp/mail-parameters.ts";
import type {
  MessageSink, SessionEvent, SessionHandler, SessionState, SessionTransport, Transaction,
} from "../../src/smtp/session-handler.ts";
import type { SaslExchange, SaslStep } from "../../src/sasl/exchange.ts";

export class FakeTransport implements SessionTransport {
  written = "";
  closed = false;
  startTlsCalls = 0;
  pauses = 0;
  resumes = 0;
  /** Anything written after close() (must never happen). */
  writtenAfterClose = "";

  write(data: Buffer): void {
    const text = data.toString("utf8");
    if (this.closed) this.writtenAfterClose += text;
    this.written += text;
  }
  startTls(): void {
    this.startTlsCalls++;
  }
  close(): void {
    this.closed = true;
  }
  pause(): void {
    this.pauses++;
  }
  resume(): void {
    this.resumes++;
  }
}

export interface StoredMessage {
  readonly tx: Transaction;
  readonly state: SessionState;
  content: Buffer;
  ended: boolean;
  aborted: boolean;
}

export class FakeHandler implements SessionHandler {
  mails: { from: Mailbox | null; params: MailParameters; state: SessionState }[] = [];
  rcpts: { to: Mailbox; params: RcptParameters }[] = [];
  /** Every sink opened, in order. */
  messages: StoredMessage[] = [];
  events: { name: SessionEvent; detail?: Record<string, unknown> }[] = [];
  authFailures = 0;

  /** Refuse MAIL with this reply. */
  mailReply: Reply | undefined = undefined;
  /** Refuse (or answer) RCPT with this reply; a function sees the address. */
  rcptReply: Reply | undefined | ((to: Mailbox) => Reply | undefined) = undefined;
  /** openMessage refuses with this reply. */
  openReply: Reply | undefined = undefined;
  /** What sink.end() returns. */
  endReply: Reply = reply(250, "2.0.0", "Ok: queued as TESTID");
  /** Extra data sent with a successful AUTH (RFC 4954 §4). */
  authSuccessData: Buffer | undefined = undefined;
  /** authFailed() answers this (true = disconnect). */
  disconnectOnAuthFailure = false;
  /** Make the handler's answers asynchronous (resolved on a later turn). */
  async = false;

  private later<T>(value: T): Promise<T> | T {
    if (!this.async) return value;
    return new Promise((resolve) => setImmediate(() => resolve(value)));
  }

  mail(state: SessionState, from: Mailbox | null, params: MailParameters): Promise<Reply | undefined> | Reply | undefined {
    this.mails.push({ from, params, state });
    return this.later(this.mailReply);
  }

  rcpt(_state: SessionState, _tx: Transaction, to: Mailbox, params: RcptParameters): Promise<Reply | undefined> | Reply | undefined {
    this.rcpts.push({ to, params });
    const r = typeof this.rcptReply === "function" ? this.rcptReply(to) : this.rcptReply;
    return this.later(r);
  }

  async openMessage(state: SessionState, tx: Transaction): Promise<MessageSink | Reply> {
    if (this.async) await this.later(null);
    if (this.openReply) return this.openReply;
    const stored: StoredMessage = {
      tx: { mailFrom: tx.mailFrom, mailParams: tx.mailParams, recipients: [...tx.recipients] },
      state,
      content: Buffer.alloc(0),
      ended: false,
      aborted: false,
    };
    this.messages.push(stored);
    const handler = this;
    return {
      write(chunk: Buffer): Promise<void> | void {
        if (stored.ended || stored.aborted) throw new Error("write after end/abort");
        stored.content = Buffer.concat([stored.content, chunk]);
        return handler.async ? handler.later(undefined) : undefined;
      },
      async end(): Promise<Reply> {
        if (stored.aborted) throw new Error("end after abort");
        stored.ended = true;
        return handler.endReply;
      },
      abort(): void {
        stored.aborted = true;
      },
    };
  }

  startAuth(_state: SessionState, mechanism: string): SaslExchange | undefined {
    if (mechanism !== "PLAIN") return undefined;
    const handler = this;
    return {
      async step(response: Buffer | null): Promise<SaslStep> {
        if (response === null) return { kind: "challenge", data: Buffer.alloc(0) };
        const parts = response.toString("utf8").split("\0");
        if (parts.length !== 3) return { kind: "failure", reason: "malformed" };
        if (parts[1] === "alice" && parts[2] === "secret") {
          return handler.authSuccessData
            ? { kind: "success", user: "alice", data: handler.authSuccessData }
            : { kind: "success", user: "alice" };
        }
        return { kind: "failure", reason: "credentials" };
      },
    };
  }

  authFailed(_state: SessionState): Promise<boolean> | boolean {
    this.authFailures++;
    return this.disconnectOnAuthFailure;
  }

  event(name: SessionEvent, detail?: Record<string, unknown>): void {
    this.events.push({ name, detail });
  }

  /** Messages whose end() was called (i.e. stored and acknowledged or refused by end()). */
  get ended(): StoredMessage[] {
    return this.messages.filter((m) => m.ended);
  }
}

export const defaultLimits: SessionLimits = {
  messageSize: 10_000,
  recipients: 3,
  messagesPerConnection: 5,
  commandLine: 512,
  softErrors: 100,
  hardErrors: 20,
};

export interface Setup {
  readonly session: Session;
  readonly handler: FakeHandler;
  readonly transport: FakeTransport;
}

export interface SetupOptions extends Partial<Omit<SessionOptions, "limits">> {
  readonly limits?: Partial<SessionLimits>;
}

export function makeSession(o: SetupOptions = {}, handler = new FakeHandler()): Setup {
  const transport = new FakeTransport();
  const opts: SessionOptions = {
    hostname: "mx.test",
    banner: "ESMTP Petrel",
    bareNewline: "normalize",
    startTlsAvailable: true,
    implicitTls: null,
    authMechanisms: ["PLAIN"],
    requireAuth: false,
    ...o,
    limits: { ...defaultLimits, ...o.limits },
  };
  const session = new Session(opts, handler, transport);
  return { session, handler, transport };
}

export const TLS_INFO = { version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" };

/** One parsed reply: code, enhanced status (if the final line has one) and the text of every line. */
export interface ParsedReply {
  readonly code: number;
  readonly status: string | undefined;
  readonly lines: string[];
  /** "250 2.1.0" or "220" — what tests compare. */
  readonly short: string;
}

export function parseReplies(text: string): ParsedReply[] {
  const out: ParsedReply[] = [];
  if (text === "") return out;
  if (!text.endsWith("\r\n")) throw new Error(`reply text does not end with CRLF: ${JSON.stringify(text)}`);
  let lines: string[] = [];
  for (const raw of text.slice(0, -2).split("\r\n")) {
    const m = /^(\d{3})([ -])(.*)$/s.exec(raw);
    if (!m) throw new Error(`malformed reply line: ${JSON.stringify(raw)}`);
    lines.push(raw);
    if (m[2] === " ") {
      const code = Number(m[1]);
      const sm = /^(\d\.\d{1,3}\.\d{1,3}) /.exec(m[3]);
      const status = sm ? sm[1] : undefined;
      out.push({
        code, status,
        lines: lines.map((l) => l.slice(4)),
        short: status ? `${code} ${status}` : String(code),
      });
      lines = [];
    } else if (lines.length > 1 && lines[0].slice(0, 3) !== m[1]) {
      throw new Error(`multi-line reply changes code: ${JSON.stringify(raw)}`);
    }
  }
  if (lines.length > 0) throw new Error(`unterminated multi-line reply: ${JSON.stringify(lines)}`);
  return out;
}

/**
 * Let the engine's async pump run to quiescence: turns of the event loop, no
 * timers. Idle means the pump is not running (a private field, read here
 * only) and the output has not changed for a few turns.
 */
export async function settle(s: Setup): Promise<void> {
  const t = s.transport;
  const running = (): boolean => (s.session as unknown as { running: boolean }).running;
  let stable = 0;
  let last = -1;
  for (let i = 0; i < 100_000 && stable < 4; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const now = t.written.length + (t.closed ? 1 : 0);
    if (now === last && !running()) stable++;
    else stable = 0;
    last = now;
  }
}

/** Feed bytes (one chunk, or `byteByByte`, or the given chunks) and return the replies they produced. */
export async function converse(
  s: Setup,
  input: string | Buffer | (string | Buffer)[],
  how: { byteByByte?: boolean } = {},
): Promise<ParsedReply[]> {
  const before = s.transport.written.length;
  const chunks = (Array.isArray(input) ? input : [input]).map((c) => (typeof c === "string" ? Buffer.from(c, "utf8") : c));
  for (const c of chunks) {
    if (how.byteByByte) {
      for (const b of c) s.session.receive(Buffer.of(b));
    } else {
      s.session.receive(c);
    }
  }
  await settle(s);
  return parseReplies(s.transport.written.slice(before));
}

/** Short forms ("250 2.1.0") of the replies `converse` gives. */
export async function say(s: Setup, input: string | Buffer | (string | Buffer)[], how: { byteByByte?: boolean } = {}): Promise<string[]> {
  return (await converse(s, input, how)).map((r) => r.short);
}

/** A started session (greeting consumed) after EHLO; optionally over TLS. */
export async function ready(o: SetupOptions = {}, handler?: FakeHandler): Promise<Setup> {
  const s = makeSession(o, handler);
  s.session.start();
  await settle(s);
  const greeting = parseReplies(s.transport.written);
  if (greeting.length !== 1 || greeting[0].code !== 220) throw new Error(`no greeting: ${s.transport.written}`);
  const ehlo = await converse(s, "EHLO client.test\r\n");
  if (ehlo.length !== 1 || ehlo[0].code !== 250) throw new Error(`EHLO failed: ${JSON.stringify(ehlo)}`);
  return s;
}

/** PLAIN initial response for alice/secret. */
export const PLAIN_OK = Buffer.from("\0alice\0secret").toString("base64");
export const PLAIN_BAD = Buffer.from("\0alice\0wrong").toString("base64");

/** A started session over TLS (implicit), EHLO done, authenticated as alice. */
export async function authenticated(o: SetupOptions = {}, handler?: FakeHandler): Promise<Setup> {
  const s = await ready({ implicitTls: TLS_INFO, startTlsAvailable: false, ...o }, handler);
  const r = await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`);
  if (r[0] !== "235 2.7.0") throw new Error(`AUTH failed: ${r}`);
  return s;
}
