/**
 * The fuzzing properties of the pure protocol engine (src/smtp/), shared by
 * the quick sample in `npm test` (test/fuzz/*.test.ts) and the long run
 * (`npm run fuzz`, fuzz/run.ts). Each property is a factory so a runner can
 * build a fresh one per batch.
 */
import fc from "fast-check";
import { DataDecoder, type BareNewlinePolicy } from "../../src/smtp/data-decoder.ts";
import { dotStuff } from "../../src/smtp/dot-stuffing.ts";
import { LineEndNormalizer } from "../../src/smtp/line-end-normalizer.ts";
import { HeaderSection } from "../../src/smtp/header-section.ts";
import { formatMailbox, isValidDomain, parsePath } from "../../src/smtp/address.ts";
import { parseMailParameters, parseRcptParameters } from "../../src/smtp/mail-parameters.ts";
import { decodeXtext, encodeXtext } from "../../src/smtp/xtext.ts";
import { MAX_UNTERMINATED_LINE } from "../../src/smtp/session.ts";
import {
  SMUGGLING_VARIANTS, chunking, conversation, cut, flights, pipelining, engineConfig, hostileBytes, mailboxText, paramsText, pathText, uniformBytes,
  type EngineConfig,
} from "./arbitraries.ts";
import { drive, makeEngine, watchUnhandledRejections, type Outcome } from "./engine-driver.ts";
import { parseReplies, settle } from "../smtp/harness.ts";

export interface FuzzProperty {
  readonly name: string;
  readonly description: string;
  /** A fresh property. */
  readonly property: () => fc.IRawProperty<unknown[]>;
  /** Runs in the `npm test` sample. */
  readonly sampleRuns: number;
}

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");

function fail(outcome: Outcome, what: string): never {
  const t = outcome.s.transport;
  throw new Error(`${what}: ${outcome.problem}\n--- replies ---\n${t.written.slice(0, 2000)}`);
}

// ----------------------------------------------------------- 1–3: engine

const driveOptions = fc.record({
  early: fc.oneof({ arbitrary: fc.constant(false), weight: 9 }, { arbitrary: fc.constant(true), weight: 1 }),
  completeTls: fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, { arbitrary: fc.constant(false), weight: 1 }),
  shutdownAfter: fc.oneof({ arbitrary: fc.constant(null), weight: 8 }, { arbitrary: fc.integer({ min: 0, max: 40 }), weight: 1 }),
});

const engineBytes: FuzzProperty = {
  name: "engine-bytes",
  description: "random bytes (hostile or uniform, after EHLO or not), any chunking: no exception, well-formed replies only, silence after close",
  sampleRuns: 500,
  property: () =>
    fc.asyncProperty(
      engineConfig, fc.constantFrom([], ["EHLO c.test\r\n"], ["EHLO c.test\r\n", "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n", "DATA\r\n"]),
      fc.oneof(hostileBytes, uniformBytes), chunking, driveOptions,
      async (cfg, prefix, bytes, ch, o) => {
        const out = await drive(cfg, [...prefix.map((p) => Buffer.from(p)), bytes], ch, o);
        if (out.problem) fail(out, "engine-bytes");
      },
    ),
};

const engineGrammar: FuzzProperty = {
  name: "engine-grammar",
  description: "sequences of plausible and hostile commands (all verbs, any case, paths, params, DATA, BDAT, AUTH, STARTTLS, overlong, NUL, bare CR/LF, TLS, HTTP), any chunking: no exception, well-formed replies only, silence after close",
  sampleRuns: 500,
  property: () =>
    fc.asyncProperty(engineConfig, conversation, pipelining, chunking, driveOptions, async (cfg, commands, mask, ch, o) => {
      const out = await drive(cfg, flights(commands, mask), ch, o);
      if (out.problem) fail(out, "engine-grammar");
    }),
};

// ----------------------------------------------------------- 4: smuggling

const smugglingPrefix = fc.string({ unit: fc.constantFrom("a", " ", "\r", "\n", ".", "\x00", "\r\n", "é", "\r\n."), maxLength: 12 });
const SMUGGLED = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\nDATA\r\n";
const END = "\r\n.\r\n";

function hasBareLineEnd(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    if (b[i] === LF && (i === 0 || b[i - 1] !== CR)) return true;
    if (b[i] === CR && b[i + 1] !== LF) return true;
  }
  return false;
}

const smuggling: FuzzProperty = {
  name: "smuggling",
  description: "a body with any smuggling variant, then a second MAIL/RCPT/DATA, then the real <CRLF>.<CRLF>: exactly one message under normalize, none and a 550 under reject, whatever the chunking",
  sampleRuns: 500,
  property: () =>
    fc.asyncProperty(
      fc.constantFrom<BareNewlinePolicy>("normalize", "reject"), fc.boolean(), fc.boolean(),
      smugglingPrefix, fc.constantFrom(...SMUGGLING_VARIANTS), fc.constantFrom("", "\r\n", "x", "."), smugglingPrefix, chunking,
      async (policy, auth, asyncHandler, prefix, variant, middle, evil, ch) => {
        const content = prefix + variant + middle + SMUGGLED + evil;
        const stream = "\r\n" + content;
        // Only inputs whose first real end is the final one test the invariant.
        fc.pre((stream + END).indexOf(END) === stream.length);
        const cfg: EngineConfig = {
          bareNewline: policy, tls: auth ? "implicit" : "none", requireAuth: false, authMechanisms: ["PLAIN"],
          limits: { messageSize: 100_000, recipients: 10, messagesPerConnection: 10, commandLine: 512, softErrors: 100, hardErrors: 20 },
          errorDelay: false,
          handler: { async: asyncHandler, refuseMail: false, refuseSomeRcpt: false, openFails: false, end: "ok", authSuccessData: false, disconnectOnAuthFailure: false },
        };
        const s = makeEngine(cfg);
        s.session.start();
        const setup = ["EHLO c.test\r\n"];
        if (auth) setup.push(`AUTH PLAIN ${Buffer.from("\0alice\0secret").toString("base64")}\r\n`);
        for (const line of [...setup, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"]) {
          s.session.receive(Buffer.from(line));
          await settle(s);
        }
        const before = s.transport.written.length;
        const wire = Buffer.from(content + END + "QUIT\r\n", "utf8");
        for (const [i, c] of cut(wire, ch).entries()) {
          s.session.receive(c);
          if (ch.yields >>> (i % 31) & 1) await new Promise<void>((resolve) => setImmediate(resolve));
        }
        await settle(s);
        const replies = parseReplies(s.transport.written.slice(before)).map((r) => r.short);
        const h = s.handler;
        const label = `${policy} ${JSON.stringify(content)}: replies ${JSON.stringify(replies)}, ${h.mails.length} MAIL, ${h.messages.length} message(s)`;
        if (h.mails.length !== 1 || h.rcpts.length !== 1 || h.messages.length !== 1) throw new Error(`smuggled transaction reached the handler: ${label}`);
        const m = h.messages[0];
        const bare = hasBareLineEnd(Buffer.from(content + "\r\n", "utf8"));
        if (policy === "reject" && bare) {
          if (m.ended || !m.aborted || replies.join() !== "550 5.5.2,221 2.0.0") throw new Error(`reject: expected 550 and nothing stored: ${label}`);
        } else {
          if (!m.ended || replies.join() !== "250 2.0.0,221 2.0.0") throw new Error(`expected exactly one message stored: ${label}`);
          const expected = referenceDecode(Buffer.from(stream.slice(2) + END, "utf8"));
          if (!expected.done || !m.content.equals(expected.content)) {
            throw new Error(`stored content differs from the reference decoding: ${label}: ${JSON.stringify(m.content.toString("latin1"))}`);
          }
        }
      },
    ),
};

// ---------------------------------------------------- 5: DATA decoding

/**
 * A line-at-a-time reference model of the DATA decoder (RFC 5321 §4.5.2 and
 * Petrel's smuggling rules), for differential testing. The stream is what
 * follows the DATA command's CRLF.
 */
export function referenceDecode(s: Buffer): { content: Buffer; done: boolean; rest: Buffer; bareLf: boolean; bareCr: boolean } {
  const out: Buffer[] = [];
  let start: "real" | "bare" = "real";
  let bareLf = false;
  let bareCr = false;
  let pos = 0;
  const noteCr = (line: Buffer, lineEndsWithCrlf: boolean): void => {
    for (let i = 0; i < line.length; i++) if (line[i] === CR && !(lineEndsWithCrlf && i === line.length - 1)) bareCr = true;
  };
  for (;;) {
    const lf = s.indexOf(LF, pos);
    if (lf === -1) {
      let tail = s.subarray(pos);
      if (tail.length > 0 && tail[0] === 0x2e) tail = tail.subarray(1);
      noteCr(tail, false);
      out.push(tail);
      return { content: Buffer.concat(out), done: false, rest: Buffer.alloc(0), bareLf, bareCr };
    }
    let line = s.subarray(pos, lf);
    pos = lf + 1;
    if (line.length > 0 && line[0] === 0x2e) {
      if (line.length === 2 && line[1] === CR) {
        if (start === "real") return { content: Buffer.concat(out), done: true, rest: s.subarray(pos), bareLf, bareCr };
        bareLf = true;
        out.push(Buffer.from(".\r\n"));
        start = "real";
        continue;
      }
      if (line.length === 1) {
        bareLf = true;
        out.push(Buffer.from(".\r\n"));
        start = "bare";
        continue;
      }
      line = line.subarray(1);
    }
    const crlf = line.length > 0 && line[line.length - 1] === CR;
    noteCr(line, crlf);
    if (crlf) {
      out.push(line, Buffer.from("\n"));
      start = "real";
    } else {
      bareLf = true;
      out.push(line, CRLF);
      start = "bare";
    }
  }
}

function decodeChunked(policy: BareNewlinePolicy, chunks: Buffer[]): { content: Buffer; done: boolean; rest: Buffer; decoder: DataDecoder } {
  const d = new DataDecoder(policy);
  const out: Buffer[] = [];
  for (let i = 0; i < chunks.length; i++) {
    const r = d.feed(chunks[i]);
    out.push(...r.content);
    if (r.done) return { content: Buffer.concat(out), done: true, rest: Buffer.concat([r.rest, ...chunks.slice(i + 1)]), decoder: d };
  }
  return { content: Buffer.concat(out), done: false, rest: Buffer.alloc(0), decoder: d };
}

const dataBytes = fc.array(
  fc.oneof(
    { arbitrary: fc.constantFrom(CR, LF, 0x2e, 0x00, 0x61), weight: 4 },
    { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 1 },
  ),
  { maxLength: 300 },
).map((a) => Buffer.from(a));

const dotRoundTrip: FuzzProperty = {
  name: "dot-roundtrip",
  description: "DotStuffer encoding of any bytes decodes back exactly (bare LF as CRLF, final CRLF added), any chunking; reject flags exactly the bare CRs",
  sampleRuns: 500,
  property: () =>
    fc.property(dataBytes, chunking, fc.uint8Array({ maxLength: 20 }), (content, ch, after) => {
      const canon = canonicalData(content);
      const wire = Buffer.concat([dotStuff(content), after]);
      for (const policy of ["normalize", "reject"] as const) {
        const r = decodeChunked(policy, cut(wire, ch));
        if (!r.done) throw new Error(`${policy}: end of data not found`);
        if (!r.content.equals(canon)) throw new Error(`${policy}: decoded ${JSON.stringify(r.content.toString("latin1"))}, expected ${JSON.stringify(canon.toString("latin1"))}`);
        if (!r.rest.equals(Buffer.from(after))) throw new Error(`${policy}: rest differs`);
        if (r.decoder.bareLfSeen) throw new Error(`${policy}: bare LF reported in a dot-stuffed stream`);
        if (policy === "reject" && r.decoder.bareCrSeen !== hasBareCr(canon)) throw new Error(`reject: bareCrSeen ${r.decoder.bareCrSeen}, expected ${!r.decoder.bareCrSeen}`);
      }
    }),
};

/** What DATA should deliver for `content`: bare LF → CRLF, and a CRLF at the end of a non-empty last line. */
function canonicalData(content: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < content.length; i++) {
    if (content[i] === LF && (i === 0 || content[i - 1] !== CR)) out.push(CR);
    out.push(content[i]);
  }
  if (out.length > 0 && out[out.length - 1] !== LF) out.push(CR, LF);
  return Buffer.from(out);
}

function hasBareCr(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] === CR && b[i + 1] !== LF) return true;
  return false;
}

const dataDecoderReference: FuzzProperty = {
  name: "data-decoder-reference",
  description: "DataDecoder on any bytes (then a real end), any chunking, equals a line-at-a-time reference model: content, end, rest, bare LF/CR flags",
  sampleRuns: 500,
  property: () =>
    fc.property(dataBytes, chunking, fc.boolean(), (bytes, ch, withEnd) => {
      const wire = withEnd ? Buffer.concat([bytes, Buffer.from("\r\n.\r\nNOOP\r\n")]) : bytes;
      const ref = referenceDecode(wire);
      for (const policy of ["normalize", "reject"] as const) {
        const r = decodeChunked(policy, cut(wire, ch));
        const label = `${policy} ${JSON.stringify(wire.toString("latin1"))}`;
        if (r.done !== ref.done) throw new Error(`${label}: done ${r.done}, reference ${ref.done}`);
        if (!ref.done) continue; // an unfinished stream may hold back a "." or ".\r"
        if (!r.content.equals(ref.content)) throw new Error(`${label}: content ${JSON.stringify(r.content.toString("latin1"))}, reference ${JSON.stringify(ref.content.toString("latin1"))}`);
        if (!r.rest.equals(ref.rest)) throw new Error(`${label}: rest differs`);
        if (r.decoder.bareLfSeen !== ref.bareLf) throw new Error(`${label}: bareLfSeen ${r.decoder.bareLfSeen}, reference ${ref.bareLf}`);
        if (policy === "reject" && r.decoder.bareCrSeen !== ref.bareCr) throw new Error(`${label}: bareCrSeen ${r.decoder.bareCrSeen}, reference ${ref.bareCr}`);
      }
    }),
};

const bdatNormalizer: FuzzProperty = {
  name: "bdat-normalizer",
  description: "LineEndNormalizer: any bytes, any chunking, gives CRLF-only content equal to the unchunked reference; bare LF/CR flags exact",
  sampleRuns: 500,
  property: () =>
    fc.property(dataBytes, chunking, (bytes, ch) => {
      for (const policy of ["normalize", "reject"] as const) {
        const n = new LineEndNormalizer(policy);
        const out: Buffer[] = [];
        for (const c of cut(bytes, ch)) out.push(...n.feed(c));
        out.push(...n.finish());
        const got = Buffer.concat(out);
        // Reference: bare LF → CRLF; a missing final line end is added.
        const ref: number[] = [];
        let bareLf = false;
        let bareCr = false;
        for (let i = 0; i < bytes.length; i++) {
          if (bytes[i] === LF && (i === 0 || bytes[i - 1] !== CR)) {
            ref.push(CR);
            bareLf = true;
          }
          if (bytes[i] === CR && i + 1 < bytes.length && bytes[i + 1] !== LF) bareCr = true;
          ref.push(bytes[i]);
        }
        if (ref.length > 0 && ref[ref.length - 1] === CR) ref.push(LF);
        else if (ref.length > 0 && ref[ref.length - 1] !== LF) ref.push(CR, LF);
        const label = `${policy} ${JSON.stringify(bytes.toString("latin1"))}`;
        if (!got.equals(Buffer.from(ref))) throw new Error(`${label}: got ${JSON.stringify(got.toString("latin1"))}`);
        if (n.bareLfSeen !== bareLf) throw new Error(`${label}: bareLfSeen ${n.bareLfSeen}`);
        if (policy === "reject" && n.bareCrSeen !== bareCr) throw new Error(`${label}: bareCrSeen ${n.bareCrSeen}, expected ${bareCr}`);
      }
    }),
};

const headerPiece = fc.oneof(
  fc.constantFrom("Subject: hi\r\n", "From: a@b\r\n", " folded\r\n", "\tfolded\r\n", "\r\n", "X-A : b\r\n", ":x\r\n", "Bad Name: x\r\n", "body\r\n", "\r", "\n", "Sub", "ject:", "é: x\r\n"),
  fc.string({ unit: "binary-ascii", maxLength: 20 }),
  fc.integer({ min: 990, max: 1010 }).map((n) => "N".repeat(n) + ": v\r\n"),
);

const headerSection: FuzzProperty = {
  name: "header-section",
  description: "HeaderSection: the output, fields, size and additions do not depend on chunking; additions inserted exactly once",
  sampleRuns: 500,
  property: () =>
    fc.property(fc.array(headerPiece, { maxLength: 12 }).map((a) => Buffer.from(a.join(""), "latin1")), chunking, fc.integer({ min: 10, max: 2000 }), (input, ch, limit) => {
      const run = (chunks: Buffer[]): { out: Buffer; fields: string; size: number; tooLarge: boolean; calls: number } => {
        let calls = 0;
        const h = new HeaderSection({ sizeLimit: limit, additions: () => (calls++, "X-Added: yes\r\n") });
        const out: Buffer[] = [];
        for (const c of chunks) out.push(...h.feed(c));
        out.push(...h.finish());
        return { out: Buffer.concat(out), fields: JSON.stringify([...h.fields]), size: h.size, tooLarge: h.tooLarge, calls };
      };
      const whole = run([input]);
      const parts = run(cut(input, ch));
      const label = JSON.stringify(input.toString("latin1"));
      if (whole.calls !== 1 || parts.calls !== 1) throw new Error(`${label}: additions called ${whole.calls}/${parts.calls} times`);
      if (!whole.out.equals(parts.out)) throw new Error(`${label}: chunked output ${JSON.stringify(parts.out.toString("latin1"))} ≠ ${JSON.stringify(whole.out.toString("latin1"))}`);
      if (whole.fields !== parts.fields || whole.size !== parts.size || whole.tooLarge !== parts.tooLarge) throw new Error(`${label}: fields/size differ with chunking`);
      if (whole.out.indexOf("X-Added: yes\r\n") === -1) throw new Error(`${label}: additions missing`);
    }),
};

// ------------------------------------------------------- 6: addresses

const addressInput = fc.oneof(
  { arbitrary: pathText, weight: 6 },
  { arbitrary: mailboxText.map((m) => `<${m}>${" SIZE=1"}`), weight: 1 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 80 }), weight: 1 },
  { arbitrary: fc.string({ unit: fc.constantFrom("<", ">", "@", ".", '"', "\\", ":", ",", "[", "]", "a", " ", "é", "İ"), maxLength: 30 }), weight: 2 },
);

const addressIdempotence: FuzzProperty = {
  name: "address",
  description: "parsePath never throws; whatever it accepts formats (formatMailbox) to a path it accepts again as the same mailbox",
  sampleRuns: 1000,
  property: () =>
    fc.property(addressInput, fc.boolean(), fc.boolean(), (text, allowUtf8, allowNull) => {
      const opts = { allowUtf8, allowNull };
      const r = parsePath(text, opts);
      if (!r.ok || r.mailbox === null) return;
      const m = r.mailbox;
      if (m.domain !== "" && !isValidDomain(m.domain, allowUtf8)) throw new Error(`${JSON.stringify(text)}: accepted domain ${JSON.stringify(m.domain)} is not a valid domain`);
      const formatted = `<${formatMailbox(m)}>`;
      const again = parsePath(formatted, opts);
      if (!again.ok) throw new Error(`${JSON.stringify(text)} → ${JSON.stringify(formatted)} refused: ${again.reason}`);
      if (again.mailbox === null || again.mailbox.localPart !== m.localPart || again.mailbox.domain !== m.domain || again.rest !== "") {
        throw new Error(`${JSON.stringify(text)} → ${JSON.stringify(formatted)} parsed as ${JSON.stringify(again)}`);
      }
    }),
};

const enabledArb = fc.record({ size: fc.boolean(), eightBitMime: fc.boolean(), smtputf8: fc.boolean(), dsn: fc.boolean(), auth: fc.boolean(), requireTls: fc.boolean() });

const parameters: FuzzProperty = {
  name: "parameters",
  description: "MAIL/RCPT parameter parsers never throw and answer only 501/504/552/555 with a 5.x.x code; xtext round-trips",
  sampleRuns: 1000,
  property: () =>
    fc.property(fc.oneof(paramsText, fc.string({ unit: "binary", maxLength: 60 })), enabledArb, fc.oneof(fc.string({ unit: "binary", maxLength: 30 }), fc.string({ unit: fc.constantFrom("\uFEFF", "a", "+", "=", "é", "\u0000", "😀", " "), maxLength: 6 })), (text, enabled, s) => {
      for (const r of [parseMailParameters(text, enabled), parseRcptParameters(text, enabled)]) {
        if (!r.ok && (![501, 504, 552, 555].includes(r.code) || !r.status.startsWith("5."))) throw new Error(`bad error ${JSON.stringify(r)}`);
      }
      const m = parseMailParameters(text, enabled);
      if (m.ok && m.params.size !== undefined && !Number.isSafeInteger(m.params.size)) throw new Error(`unsafe SIZE ${m.params.size}`);
      if (s.isWellFormed() && decodeXtext(encodeXtext(s)) !== s) throw new Error(`xtext round trip failed for ${JSON.stringify(s)}`);
    }),
};

// --------------------------------------------------- 7: bounded memory

/**
 * Input without LF, fed like a socket (one chunk per turn of the event loop,
 * nothing while paused): the engine holds at most one line limit plus one
 * chunk, and closes once the line has gone on for MAX_UNTERMINATED_LINE.
 */
export async function floodWithoutLf(
  cfg: EngineConfig, state: "fresh" | "ehlo" | "auth" | "data" | "bdat", chunkSize: number, total: number, fill: number,
): Promise<{ maxQueued: number; bound: number; closed: boolean; sent: number; replies: string[]; problem: string | null }> {
  watchUnhandledRejections();
  const s = makeEngine(cfg);
  s.session.start();
  const setup: Record<typeof state, string> = {
    fresh: "",
    ehlo: "EHLO c.test\r\n",
    auth: "EHLO c.test\r\nAUTH PLAIN\r\n",
    data: "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n",
    bdat: `EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT ${total} LAST\r\n`,
  };
  for (const line of setup[state].split(/(?<=\r\n)/)) {
    if (line === "") continue;
    s.session.receive(Buffer.from(line));
    await settle(s);
  }
  if (state === "auth" && cfg.tls !== "implicit") throw new Error("auth flood needs implicit TLS");
  const before = s.transport.written.length;
  const queued = (): number => (s.session as unknown as { queued: number }).queued;
  const chunk = Buffer.alloc(chunkSize, fill);
  let maxQueued = 0;
  let sent = 0;
  let problem: string | null = null;
  while (sent < total && !s.transport.closed) {
    for (let n = 0; s.transport.paused && !s.transport.closed; n++) {
      if (n > 10_000) {
        problem = "paused for good";
        break;
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (problem || s.transport.closed) break;
    const c = chunk.subarray(0, Math.min(chunkSize, total - sent));
    s.session.receive(c);
    sent += c.length;
    maxQueued = Math.max(maxQueued, queued());
    await new Promise<void>((resolve) => setImmediate(resolve));
    maxQueued = Math.max(maxQueued, queued());
  }
  await settle(s);
  const limit = state === "auth" ? Math.max(cfg.limits.commandLine, 12288) : cfg.limits.commandLine;
  const bound = state === "data" || state === "bdat" ? chunkSize : limit + chunkSize;
  const replies = parseReplies(s.transport.written.slice(before)).map((r) => r.short);
  const closed = s.transport.closed;
  await s.session.closed();
  return { maxQueued, bound, closed, sent, replies, problem };
}

const boundedMemory: FuzzProperty = {
  name: "bounded-memory",
  description: "input without LF in any chunk size, in any state: the engine holds at most line limit + one chunk, and closes a command line that never ends",
  sampleRuns: 12,
  property: () =>
    fc.asyncProperty(
      fc.constantFrom<"fresh" | "ehlo" | "auth" | "data" | "bdat">("fresh", "ehlo", "auth", "data", "bdat"),
      fc.integer({ min: 1000, max: 65536 }), fc.constantFrom(512, 1000, 2048, 8192), fc.constantFrom(0x41, 0x00, 0x0d, 0x2e, 0x20), fc.boolean(),
      async (state, chunkSize, commandLine, fill, asyncHandler) => {
        const cfg: EngineConfig = {
          bareNewline: "normalize", tls: "implicit", requireAuth: false, authMechanisms: ["PLAIN"],
          limits: { messageSize: 100_000, recipients: 10, messagesPerConnection: 10, commandLine, softErrors: 100, hardErrors: 20 },
          errorDelay: false,
          handler: { async: asyncHandler, refuseMail: false, refuseSomeRcpt: false, openFails: false, end: "ok", authSuccessData: false, disconnectOnAuthFailure: false },
        };
        const total = MAX_UNTERMINATED_LINE + 4 * Math.max(commandLine, 12288) + 2 * chunkSize;
        const r = await floodWithoutLf(cfg, state, chunkSize, total, fill);
        const label = `${state} chunk ${chunkSize} line ${commandLine} fill ${fill}: max queued ${r.maxQueued} (bound ${r.bound}), closed ${r.closed}, replies ${JSON.stringify(r.replies)}`;
        if (r.problem) throw new Error(`${label}: ${r.problem}`);
        if (r.maxQueued > r.bound) throw new Error(`queue grew past its bound: ${label}`);
        if (state !== "data" && state !== "bdat" && !(r.closed && r.replies.at(-1) === "421 4.7.0")) {
          throw new Error(`an endless command line did not close the session with 421 4.7.0: ${label}`);
        }
        if (state === "bdat" && r.replies.at(-1) !== "552 5.3.4") throw new Error(`oversized BDAT not refused: ${label}`);
      },
    ),
};

export const PROPERTIES: readonly FuzzProperty[] = [
  engineBytes, engineGrammar, smuggling, dotRoundTrip, dataDecoderReference, bdatNormalizer, headerSection,
  addressIdempotence, parameters, boundedMemory,
];
