/**
 * Runs the SMTP protocol engine on fuzzed input, like a socket would (chunks,
 * turns of the event loop between some of them, back-pressure honoured,
 * STARTTLS completed), then checks the invariants every run must keep:
 *
 * 1. no exception escapes (no 421 4.3.0 "internal error", no unhandled
 *    rejection, no sink used after end/abort), and the engine never stalls
 *    with the transport paused;
 * 2. every write is whole, well-formed replies: each line /^\d{3}[ -]/, one
 *    code per multi-line reply, codes 2xx–5xx, and an enhanced status code of
 *    the reply's class on every reply but the greeting, HELO/EHLO, 334 and 354
 *    — on none where the listener hides ENHANCEDSTATUSCODES;
 * 3. nothing is written after the transport was closed, whatever comes next;
 * plus: no message is acknowledged that the sink did not end, and every
 * message opened is, once the connection is gone, either ended or aborted.
 */
import { reply } from "../../src/smtp/reply.ts";
import { Session } from "../../src/smtp/session.ts";
import { FakeHandler, FakeTransport, TLS_INFO, settle, type Setup } from "../smtp/harness.ts";
import { cut, yieldsAfter, type Chunking, type EngineConfig } from "./arbitraries.ts";

/** A transport that also keeps every write separately. */
export class RecordingTransport extends FakeTransport {
  writes: string[] = [];
  /** Set when the engine loops without consuming input (see guardAgainstSpinning). */
  spinning: string | null = null;
  override write(data: Buffer): void {
    this.writes.push(data.toString("utf8"));
    super.write(data);
  }
  get paused(): boolean {
    return this.pauses > this.resumes;
  }
}

let unhandled = 0;
let listening = false;
/** Count unhandled rejections in this process (a run compares before/after). */
export function watchUnhandledRejections(): void {
  if (listening) return;
  listening = true;
  process.on("unhandledRejection", () => {
    unhandled++;
  });
}

export const HOSTNAME = "mx.test";
export const ACK_TEXT = "Ok: queued as TESTID";

export function makeEngine(cfg: EngineConfig): Setup & { transport: RecordingTransport } {
  const handler = new FakeHandler();
  const h = cfg.handler;
  handler.async = h.async;
  if (h.refuseMail) handler.mailReply = reply(550, "5.7.1", "sender refused");
  if (h.refuseSomeRcpt) handler.rcptReply = (to) => (to.localPart.startsWith("x") ? reply(550, "5.1.1", "no such user") : undefined);
  if (h.openFails) handler.openReply = reply(451, "4.3.0", "storage unavailable");
  handler.endReply = h.end === "ok" ? reply(250, "2.0.0", ACK_TEXT) : h.end === "temp" ? reply(451, "4.3.0", "try later") : reply(554, "5.6.0", "refused");
  if (h.authSuccessData) handler.authSuccessData = Buffer.from("welcome");
  handler.disconnectOnAuthFailure = h.disconnectOnAuthFailure;
  const transport = new RecordingTransport();
  const session = new Session({
    hostname: HOSTNAME,
    banner: "ESMTP Petrel",
    bareNewline: cfg.bareNewline,
    implicitTls: cfg.tls === "implicit" ? TLS_INFO : null,
    startTlsAvailable: cfg.tls === "starttls",
    requireAuth: cfg.requireAuth,
    authMechanisms: cfg.authMechanisms,
    limits: cfg.limits,
    errorDelay: cfg.errorDelay ? () => new Promise<void>((resolve) => setImmediate(resolve)) : undefined,
    hide: cfg.hide,
  }, handler, transport);
  guardAgainstSpinning(session, transport);
  return { session, handler, transport };
}

/**
 * An engine that restarts its pump (or steps) without end never returns to
 * the event loop, which would hang the fuzzer with it. Wrap pump() and step()
 * with budgets proportional to the input; past them, stop the engine and
 * record the spin on the transport.
 */
function guardAgainstSpinning(session: Session, transport: RecordingTransport): void {
  const inner = session as unknown as {
    pump: () => Promise<void>; step: () => Promise<boolean>; receive: (b: Buffer) => void;
  };
  const pump = inner.pump.bind(session);
  const step = inner.step.bind(session);
  const receive = inner.receive.bind(session);
  let receives = 0;
  let bytes = 0;
  let pumps = 0;
  let steps = 0;
  inner.receive = (b: Buffer): void => {
    receives++;
    bytes += b.length;
    receive(b);
  };
  inner.pump = (): Promise<void> => {
    if (transport.spinning) return Promise.resolve();
    if (++pumps > 10 * receives + 1000) {
      transport.spinning = `pump() restarted ${pumps} times for ${receives} receive() calls`;
      return Promise.resolve();
    }
    return pump();
  };
  inner.step = (): Promise<boolean> => {
    if (transport.spinning) return Promise.resolve(false);
    if (++steps > 4 * bytes + 10 * receives + 1000) {
      transport.spinning = `step() ran ${steps} times for ${bytes} bytes`;
      return Promise.resolve(false);
    }
    return step();
  };
}

const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

export interface DriveOptions {
  /** Bytes arrive before the greeting (an early talker). */
  readonly early?: boolean;
  /** Complete the TLS handshake after STARTTLS (else the client never does). */
  readonly completeTls?: boolean;
  /** Call shutdown() after this many chunks. */
  readonly shutdownAfter?: number | null;
}

export interface Outcome {
  readonly s: Setup & { transport: RecordingTransport };
  /** Why the run broke an invariant, or null. */
  readonly problem: string | null;
}

/**
 * Feed `flights` (the bytes a client sends before waiting for replies) into a
 * fresh engine, each cut by `chunking`, settling after each flight; then
 * check every invariant.
 */
export async function drive(cfg: EngineConfig, flights: readonly Buffer[], chunking: Chunking, o: DriveOptions = {}): Promise<Outcome> {
  watchUnhandledRejections();
  const unhandledBefore = unhandled;
  const s = makeEngine(cfg);
  const t = s.transport;
  let problem: string | null = null;
  let tlsDone = 0;
  let count = 0;
  let started = false;
  if (!o.early) {
    s.session.start();
    started = true;
    await settle(s);
  }
  outer: for (const flight of flights) {
    for (const [i, chunk] of cut(flight, chunking).entries()) {
      // A socket delivers nothing while paused.
      for (let n = 0; t.paused && !t.closed; n++) {
        if (n > 10_000) {
          problem = "transport paused and never resumed";
          break outer;
        }
        await turn();
      }
      s.session.receive(chunk);
      if (!started) {
        s.session.start();
        started = true;
      }
      if (o.shutdownAfter != null && count++ === o.shutdownAfter) s.session.shutdown("timeout");
      if (yieldsAfter(chunking, i)) await turn();
      if (o.completeTls !== false && t.startTlsCalls > tlsDone) {
        tlsDone = t.startTlsCalls;
        await settle(s);
        s.session.tlsEstablished(TLS_INFO);
      }
    }
    await settle(s);
  }
  if (!started) s.session.start();
  await settle(s);
  if (!problem && t.paused && !t.closed) problem = "transport left paused at rest";
  // Whatever comes after a close must not be answered.
  if (t.closed) {
    s.session.receive(Buffer.from("NOOP\r\nQUIT\r\n"));
    s.session.shutdown("late");
    await settle(s);
  }
  await s.session.closed();
  await settle(s);
  problem ??= check(s, unhandled - unhandledBefore, !(cfg.hide ?? []).includes("ENHANCEDSTATUSCODES"));
  return { s, problem };
}

/** The invariants of every run; a description of the first one broken, or null. */
export function check(s: Setup & { transport: RecordingTransport }, newUnhandled: number, enhancedCodes = true): string | null {
  const t = s.transport;
  if (t.spinning) return `the engine spins: ${t.spinning}`;
  if (newUnhandled > 0) return `${newUnhandled} unhandled rejection(s)`;
  if (t.writtenAfterClose !== "") return `written after close: ${JSON.stringify(t.writtenAfterClose.slice(0, 200))}`;
  const internal = s.handler.events.find((e) => e.name === "protocol-error" && e.detail && "error" in e.detail);
  if (internal) return `exception in the engine: ${String(internal.detail!.error)}`;
  let index = 0;
  let acks = 0;
  for (const w of t.writes) {
    const r = checkWrite(w, index, enhancedCodes);
    if (typeof r === "string") return r;
    index += r.replies;
    acks += r.acks;
  }
  const ended = s.handler.ended.length;
  if (acks > ended) return `${acks} message(s) acknowledged but only ${ended} ended by the sink`;
  for (const [i, m] of s.handler.messages.entries()) {
    if (m.ended === m.aborted) return `message ${i} ${m.ended ? "both ended and aborted" : "neither ended nor aborted"} after close`;
  }
  return null;
}

const LINE = /^(\d{3})([ -])(.*)$/s;
const STATUS = /^([245])\.(\d{1,3})\.(\d{1,3}) /;

/** One transport write: whole replies only; returns how many and how many message acknowledgements. */
export function checkWrite(w: string, firstIndex: number, enhancedCodes = true): { replies: number; acks: number } | string {
  if (!w.endsWith("\r\n")) return `write does not end with CRLF: ${JSON.stringify(w.slice(-100))}`;
  const lines = w.slice(0, -2).split("\r\n");
  let replies = 0;
  let acks = 0;
  let group: { code: string; lines: string[] } | null = null;
  for (const raw of lines) {
    const m = LINE.exec(raw);
    if (!m) return `malformed reply line ${JSON.stringify(raw.slice(0, 200))}`;
    if (/[\r\n]/.test(m[3])) return `reply line holds CR or LF: ${JSON.stringify(raw)}`;
    if (group && group.code !== m[1]) return `multi-line reply changes code: ${JSON.stringify(raw)}`;
    group ??= { code: m[1], lines: [] };
    group.lines.push(m[3]);
    if (m[2] === "-") continue;
    const problem = checkReply(Number(group.code), group.lines, firstIndex + replies, enhancedCodes);
    if (problem) return problem;
    if (group.code === "250" && group.lines[0].endsWith(ACK_TEXT)) acks++;
    replies++;
    group = null;
  }
  if (group) return `write ends inside a multi-line reply: ${JSON.stringify(w.slice(-200))}`;
  return { replies, acks };
}

function checkReply(code: number, lines: string[], index: number, enhancedCodes: boolean): string | null {
  const text = `${code} ${lines.join(" | ")}`.slice(0, 300);
  if (code < 200 || code > 599) return `reply code out of range: ${text}`;
  if (code === 421 && lines[0].startsWith("4.3.0 Error: internal error")) return `internal error reply: ${text}`;
  const statuses = lines.map((l) => STATUS.exec(l)?.[0] ?? null);
  const exempt =
    (index === 0 && code === 220 && lines[0] === `${HOSTNAME} ESMTP Petrel`) || // greeting
    (code === 250 && statuses[0] === null && lines[0].startsWith(HOSTNAME)) || // HELO / EHLO
    code === 334 || code === 354;
  if (exempt) {
    if (code === 354 && lines.length !== 1) return `multi-line 354: ${text}`;
    return null;
  }
  if (!enhancedCodes) return statuses.some((st) => st !== null) ? `enhanced status code with ENHANCEDSTATUSCODES hidden: ${text}` : null;
  if (statuses[0] === null) return `reply without an enhanced status code: ${text}`;
  if (statuses.some((st) => st !== statuses[0])) return `enhanced status code differs between lines: ${text}`;
  if (statuses[0][0] !== String(code)[0]) return `enhanced status class does not match the reply: ${text}`;
  return null;
}
