/**
 * Generators (fast-check arbitraries) for fuzzing the SMTP protocol engine:
 * hostile byte soup, a grammar of plausible and implausible commands, mail
 * paths and ESMTP parameters, message bodies full of line-end tricks, and the
 * ways a network may cut all of that into chunks.
 */
import fc from "fast-check";
import type { BareNewlinePolicy } from "../../src/smtp/data-decoder.ts";
import { EXTENSIONS, type Extension } from "../../src/smtp/extensions.ts";

const enc = (s: string): Buffer => Buffer.from(s, "utf8");

// ------------------------------------------------------------------ bytes

/** Bytes that matter to the engine, so random soup often forms structure. */
const INTERESTING = [0x0d, 0x0a, 0x2e, 0x00, 0x20, 0x3a, 0x3c, 0x3e, 0x40, 0x22, 0x5c, 0x3d, 0x16, 0x03, 0xff, 0xc3, 0x41];

/** Random bytes, biased towards CR, LF, dot, NUL and the punctuation of the grammar. */
export const hostileBytes: fc.Arbitrary<Buffer> = fc
  .array(
    fc.oneof(
      { arbitrary: fc.constantFrom(...INTERESTING), weight: 3 },
      { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 2 },
      { arbitrary: fc.integer({ min: 0x41, max: 0x5a }), weight: 1 },
    ),
    { maxLength: 600 },
  )
  .map((a) => Buffer.from(a));

/** Uniform random bytes. */
export const uniformBytes: fc.Arbitrary<Buffer> = fc.uint8Array({ maxLength: 1500 }).map((a) => Buffer.from(a));

// -------------------------------------------------------------- addresses

const atext = fc.constantFrom(..."abcXYZ09!#$%&'*+-/=?^_`{|}~".split(""));
const atom = fc.string({ unit: atext, minLength: 1, maxLength: 8 });
const utf8Char = fc.constantFrom("é", "ü", "ß", "İ", "ǅ", "Ω", "中", "文", "😀", "\u0085", "\u00a0", "\u2028", "\u0301", "ﬃ", "Ⅻ");
const dotString = fc.oneof(
  fc.array(atom, { minLength: 1, maxLength: 4 }).map((a) => a.join(".")),
  fc.constantFrom("a..b", ".a", "a.", "", "postmaster", "PostMaster", "a b"),
  fc.tuple(atom, utf8Char, atom).map(([a, u, b]) => a + u + b),
);
const quotedChar = fc.oneof(
  fc.string({ unit: "grapheme-ascii", maxLength: 1 }),
  fc.constantFrom('\\"', "\\\\", "\\a", " ", "\\ ", "\\\x01", "é", "\x7f", "\t", '"'),
);
const quotedString = fc.array(quotedChar, { maxLength: 10 }).map((a) => `"${a.join("")}"`);
const localPart = fc.oneof({ arbitrary: dotString, weight: 4 }, { arbitrary: quotedString, weight: 2 }, {
  arbitrary: fc.integer({ min: 60, max: 70 }).map((n) => "l".repeat(n)), weight: 1,
});

const ldhLabel = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,6}[A-Za-z0-9])?$/),
  fc.constantFrom("-a", "a-", "", "xn--bcher-kva", "a_b"),
  fc.integer({ min: 60, max: 66 }).map((n) => "d".repeat(n)),
  fc.array(utf8Char, { minLength: 1, maxLength: 4 }).map((a) => a.join("")),
  fc.integer({ min: 20, max: 40 }).map((n) => "İ".repeat(n)),
);
const domainName = fc.array(ldhLabel, { minLength: 1, maxLength: 4 }).map((a) => a.join("."));
const byteNum = fc.integer({ min: 0, max: 300 });
const hex4 = fc.stringMatching(/^[0-9A-Fa-f]{1,4}$/);
const addressLiteral = fc.oneof(
  fc.tuple(byteNum, byteNum, byteNum, byteNum).map((p) => `[${p.join(".")}]`),
  fc.array(hex4, { minLength: 1, maxLength: 9 }).map((g) => `[IPv6:${g.join(":")}]`),
  fc.tuple(fc.array(hex4, { maxLength: 4 }), fc.array(hex4, { maxLength: 4 })).map(([l, r]) => `[ipv6:${l.join(":")}::${r.join(":")}]`),
  fc.tuple(fc.array(hex4, { maxLength: 6 }), byteNum).map(([g, b]) => `[IPv6:${g.join(":")}::1.2.3.${b}]`),
  fc.constantFrom("[]", "[1.2.3]", "[tag:foo]", "[IPv6:::]", "[IPv6::::1]"),
);
const domain = fc.oneof({ arbitrary: domainName, weight: 4 }, { arbitrary: addressLiteral, weight: 1 });

/** Something that may or may not be a Mailbox. */
export const mailboxText: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.tuple(localPart, domain).map(([l, d]) => `${l}@${d}`), weight: 8 },
  { arbitrary: localPart, weight: 1 },
  { arbitrary: fc.tuple(localPart, domain, domain).map(([l, d, e]) => `${l}@${d}@${e}`), weight: 1 },
);

/** Text after "FROM:" / "TO:": a path (valid or not), perhaps with a source route. */
export const pathText: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: mailboxText.map((m) => `<${m}>`), weight: 8 },
  { arbitrary: fc.tuple(fc.array(domainName, { minLength: 1, maxLength: 3 }), mailboxText).map(([r, m]) => `<${r.map((d) => `@${d}`).join(",")}:${m}>`), weight: 1 },
  { arbitrary: mailboxText.map((m) => ` <${m}>`), weight: 1 },
  { arbitrary: fc.constantFrom("<>", "< >", "<<a@b>>", "", "<", ">", "a@b", "<a@b", "<a@b>x", "<@:a@b>", "<\"a@b>", "  <a@b>", "<Postmaster>"), weight: 2 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 40 }).map((s) => `<${s}>`), weight: 1 },
);

// ------------------------------------------------------------- parameters

const xtext = fc.string({ unit: fc.constantFrom("a", "b", "+2B", "+3D", "+", "+0", "+G1", "+00", "é", "\\x{41}", "\\x{D800}"), maxLength: 6 });
const param = fc.oneof(
  fc.tuple(fc.constantFrom("SIZE", "size"), fc.oneof(fc.nat().map(String), fc.constantFrom("", "-1", "1e3", "99999999999999999999", "999999999999999999999", "0x10"))).map(([k, v]) => `${k}=${v}`),
  fc.constantFrom("BODY=8BITMIME", "BODY=7bit", "BODY=BINARYMIME", "BODY=", "BODY=foo", "BODY"),
  fc.constantFrom("SMTPUTF8", "SMTPUTF8=yes", "REQUIRETLS", "RET=FULL", "RET=hdrs", "RET=x", "AUTH=<>", "AUTH"),
  xtext.map((x) => `ENVID=${x}`),
  xtext.map((x) => `AUTH=${x}`),
  fc.constantFrom("NOTIFY=NEVER", "NOTIFY=SUCCESS,FAILURE", "NOTIFY=never,delay", "NOTIFY=", "NOTIFY=DELAY,DELAY"),
  fc.tuple(fc.constantFrom("rfc822", "utf-8", "x400", ""), xtext).map(([t, x]) => `ORCPT=${t};${x}`),
  fc.stringMatching(/^[A-Za-z0-9-]{0,6}(=[!-~]{0,6})?$/),
  fc.string({ unit: "binary", maxLength: 8 }),
);
/** What follows the path: " KW=value KW" … */
export const paramsText: fc.Arbitrary<string> = fc
  .array(fc.tuple(param, fc.constantFrom(" ", "  ", "\t")), { maxLength: 4 })
  .map((ps) => ps.map(([p, sep]) => sep + p).join(""));

// ----------------------------------------------------------------- bodies

/** Sequences that would end DATA on a sloppy server (SMTP smuggling and friends). */
export const SMUGGLING_VARIANTS = [
  "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r", "\r.\r\n", "\r\n\x00.\r\n", "\r\n.\x00\r\n",
  "\n.\r", "\r.\n", "\r\n.\r\r\n", "\r\n \r\n.\n", "\r\n..\r\n", "\n..\n", "\r\n.\r\n\r", "\r\r\n.\n",
] as const;

const bodyPiece = fc.oneof(
  { arbitrary: fc.string({ unit: "grapheme-ascii", maxLength: 30 }), weight: 4 },
  { arbitrary: fc.constantFrom("\r\n", "\n", "\r", ".", "..", "\r\n.", "\r\n..", "\x00", "Subject: x\r\n", "\r\n\r\n", " ", "é"), weight: 4 },
  { arbitrary: fc.constantFrom(...SMUGGLING_VARIANTS), weight: 2 },
  { arbitrary: fc.integer({ min: 100, max: 3000 }).map((n) => "x".repeat(n)), weight: 1 },
);
/** Message content: anything (it may contain a real end, too). */
export const body: fc.Arbitrary<string> = fc.array(bodyPiece, { maxLength: 12 }).map((a) => a.join(""));

// --------------------------------------------------------------- commands

const EOL = fc.oneof(
  { arbitrary: fc.constant("\r\n"), weight: 20 },
  { arbitrary: fc.constantFrom("\n", "\r", "\r\r\n", "\n\r", "", "\x00\r\n", " \r\n"), weight: 1 },
);
const verbCase = (v: string): fc.Arbitrary<string> => fc.oneof({ arbitrary: fc.constant(v), weight: 3 }, { arbitrary: fc.mixedCase(fc.constant(v)), weight: 1 });
const helloName = fc.oneof(domainName, fc.constantFrom("", " ", "a b", "[127.0.0.1]", "x".repeat(600)));

const line = (parts: fc.Arbitrary<string>): fc.Arbitrary<string> => fc.tuple(parts, EOL).map(([p, e]) => p + e);

const ehlo = line(fc.tuple(fc.oneof(verbCase("EHLO"), verbCase("HELO")), fc.constantFrom(" ", "  ", ""), helloName).map(([v, s, h]) => v + s + h));
const mail = line(fc.tuple(verbCase("MAIL"), fc.constantFrom(" FROM:", " from:", " FROM: ", " FROM :", "FROM:", " TO:"), pathText, paramsText).map((p) => p.join("")));
const rcpt = line(fc.tuple(verbCase("RCPT"), fc.constantFrom(" TO:", " to:", " TO: ", " FROM:", ""), pathText, paramsText).map((p) => p.join("")));
const simple = line(fc.oneof(
  verbCase("RSET"), verbCase("NOOP"), verbCase("QUIT"), verbCase("HELP"), verbCase("STARTTLS"), verbCase("DATA"),
  fc.constantFrom("VRFY", "VRFY postmaster", "EXPN list", "TURN", "ETRN x", "RSET x", "NOOP x", "DATA x", "STARTTLS x", "", " ", "XYZZY", "MAIL", "RCPT", "AUTH", "BDAT", "BDAT x", "BDAT -1", "BDAT 1 LAST x"),
));
const dataCommand = fc
  .tuple(verbCase("DATA"), body, fc.constantFrom("\r\n.\r\n", "\r\n.\r\n", ".\r\n", "", "\r\n.\n", "\r\n"))
  .map(([v, b, end]) => [`${v}\r\n`, b + end]);
const bdatCommand = fc
  .tuple(verbCase("BDAT"), body, fc.boolean(), fc.integer({ min: -5, max: 5 }), fc.constantFrom("", " ", "  "), fc.boolean())
  .map(([v, b, last, skew, sp, consistent]) => {
    const bytes = enc(b);
    const n = consistent ? bytes.length : Math.max(0, bytes.length + skew);
    return Buffer.concat([enc(`${v} ${n}${last ? `${sp === "" ? " " : sp}LAST` : ""}\r\n`), bytes]);
  });
const b64 = fc.oneof(
  fc.base64String({ maxLength: 40 }),
  fc.constantFrom(Buffer.from("\0alice\0secret").toString("base64"), Buffer.from("\0alice\0wrong").toString("base64"), "=", "*", "====", "a===", "!!!!", ""),
  fc.string({ unit: "binary-ascii", maxLength: 20 }),
);
const auth = fc
  .tuple(verbCase("AUTH"), fc.constantFrom("PLAIN", "plain", "LOGIN", "CRAM-MD5", "", "PLAIN X Y"), fc.option(b64), fc.array(line(b64), { maxLength: 3 }))
  .map(([v, m, ir, responses]) => `${v} ${m}${ir === null ? "" : ` ${ir}`}\r\n${responses.join("")}`);
const tlsThenAuth = fc
  .tuple(b64, fc.boolean())
  .map(([ir, good]) => ["STARTTLS\r\n", "EHLO c.test\r\n", `AUTH PLAIN ${good ? Buffer.from("\0alice\0secret").toString("base64") : ir}\r\n`]);
const overlong = fc
  .tuple(fc.constantFrom("MAIL FROM:<", "NOOP ", "AUTH PLAIN ", "", "EHLO "), fc.integer({ min: 400, max: 14000 }), fc.constantFrom("a", "\x00", "é"), EOL)
  .map(([p, n, c, e]) => p + c.repeat(n) + e);
const tlsHello = fc.constant(Buffer.concat([Buffer.from("16030100a5010000a10303", "hex"), Buffer.alloc(20)]));
const http = fc.constantFrom("GET / HTTP/1.1\r\nHost: mx\r\n\r\n", "POST /x HTTP/1.0\r\n\r\n", "CONNECT a:25 HTTP/1.1\r\n\r\n", "get / HTTP/1.1\r\n");
const garbageLine = line(fc.string({ unit: "binary", maxLength: 60 }));

const plainMailbox = fc.oneof(
  { arbitrary: fc.constantFrom("a@b.test", "x@d.test", "c@d.test", "Ünï@çødé.test", "\"q q\"@[192.0.2.1]"), weight: 3 },
  { arbitrary: mailboxText, weight: 1 },
);
const goodTransaction = fc
  .tuple(plainMailbox, fc.array(plainMailbox, { minLength: 1, maxLength: 3 }), fc.boolean(), body)
  .map(([from, tos, bdat, b]) => [
    `MAIL FROM:<${from}>\r\n`, ...tos.map((t) => `RCPT TO:<${t}>\r\n`),
    ...(bdat ? [Buffer.concat([enc(`BDAT ${enc(b).length} LAST\r\n`), enc(b)])] : ["DATA\r\n", `${b}\r\n.\r\n`]),
  ]);
const simpleTransaction = fc.constant<string[]>(["MAIL FROM:<a@b.test>\r\n", "RCPT TO:<c@d.test>\r\n"]);

/** The bytes of one command (or a few: a command, then what follows its reply). */
export const command: fc.Arbitrary<Buffer[]> = fc.oneof(
  { arbitrary: ehlo, weight: 3 },
  { arbitrary: mail, weight: 4 },
  { arbitrary: rcpt, weight: 4 },
  { arbitrary: dataCommand, weight: 3 },
  { arbitrary: bdatCommand, weight: 3 },
  { arbitrary: simple, weight: 4 },
  { arbitrary: auth, weight: 3 },
  { arbitrary: tlsThenAuth, weight: 2 },
  { arbitrary: goodTransaction, weight: 4 },
  { arbitrary: simpleTransaction, weight: 2 },
  { arbitrary: overlong, weight: 1 },
  { arbitrary: tlsHello, weight: 1 },
  { arbitrary: http, weight: 1 },
  { arbitrary: garbageLine, weight: 1 },
  { arbitrary: hostileBytes.map((b) => b.subarray(0, 40)), weight: 1 },
).map((c) => (Array.isArray(c) ? c : [c]).map((x) => (typeof x === "string" ? enc(x) : x)));

/** A conversation: a sequence of commands, mostly starting with EHLO and a transaction. */
export const conversation: fc.Arbitrary<Buffer[]> = fc
  .tuple(fc.constantFrom("EHLO c.test\r\n", "", "HELO c.test\r\n"), fc.boolean(), fc.array(command, { maxLength: 25 }))
  .map(([hello, tx, cmds]) => [
    ...(hello ? [enc(hello)] : []),
    ...(tx ? [enc("MAIL FROM:<a@b.test>\r\n"), enc("RCPT TO:<c@d.test>\r\n")] : []),
    ...cmds.flat(),
  ]);

/**
 * Which commands the client sends without waiting for the replies (bit i set:
 * command i is pipelined with the next). Mostly a well-behaved client.
 */
export const pipelining: fc.Arbitrary<number> = fc.oneof(
  { arbitrary: fc.constant(0), weight: 6 },
  { arbitrary: fc.integer({ min: 0, max: 0x7fffffff }), weight: 2 },
  { arbitrary: fc.constant(0x7fffffff), weight: 1 },
);

/** Group commands into flights: the bytes sent before waiting for replies. */
export function flights(commands: readonly Buffer[], mask: number): Buffer[] {
  const out: Buffer[] = [];
  let cur: Buffer[] = [];
  for (const [i, c] of commands.entries()) {
    cur.push(c);
    if (((mask >>> (i % 31)) & 1) === 0) {
      out.push(Buffer.concat(cur));
      cur = [];
    }
  }
  if (cur.length > 0) out.push(Buffer.concat(cur));
  return out;
}

// --------------------------------------------------------------- sessions

export interface EngineConfig {
  readonly bareNewline: BareNewlinePolicy;
  readonly tls: "implicit" | "starttls" | "none";
  readonly requireAuth: boolean;
  readonly authMechanisms: readonly string[];
  readonly limits: {
    readonly messageSize: number;
    readonly recipients: number;
    readonly messagesPerConnection: number;
    readonly commandLine: number;
    readonly softErrors: number;
    readonly hardErrors: number;
  };
  readonly errorDelay: boolean;
  /** Extensions the listener hides (listeners[].hide); none when absent. */
  readonly hide?: readonly Extension[];
  readonly handler: {
    readonly async: boolean;
    readonly refuseMail: boolean;
    readonly refuseSomeRcpt: boolean;
    readonly openFails: boolean;
    readonly end: "ok" | "temp" | "perm";
    readonly authSuccessData: boolean;
    readonly disconnectOnAuthFailure: boolean;
  };
}

export const engineConfig: fc.Arbitrary<EngineConfig> = fc.record({
  bareNewline: fc.constantFrom("normalize", "reject"),
  tls: fc.constantFrom("implicit", "starttls", "none"),
  requireAuth: fc.oneof({ arbitrary: fc.constant(false), weight: 4 }, { arbitrary: fc.constant(true), weight: 1 }),
  authMechanisms: fc.constantFrom(["PLAIN"], [], ["PLAIN", "LOGIN"]),
  limits: fc.record({
    messageSize: fc.constantFrom(10_000, 50, 1_000_000),
    recipients: fc.integer({ min: 1, max: 5 }),
    messagesPerConnection: fc.oneof(fc.constant(100), fc.integer({ min: 1, max: 5 })),
    commandLine: fc.constantFrom(512, 600, 2048),
    softErrors: fc.oneof({ arbitrary: fc.constant(10), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 100 }), weight: 1 }),
    hardErrors: fc.oneof({ arbitrary: fc.constant(20), weight: 3 }, { arbitrary: fc.integer({ min: 1, max: 30 }), weight: 1 }),
  }),
  errorDelay: fc.boolean(),
  hide: fc.oneof({ arbitrary: fc.constant([]), weight: 3 }, { arbitrary: fc.subarray([...EXTENSIONS]), weight: 1 }),
  handler: fc.record({
    async: fc.boolean(),
    refuseMail: fc.oneof({ arbitrary: fc.constant(false), weight: 5 }, { arbitrary: fc.constant(true), weight: 1 }),
    refuseSomeRcpt: fc.oneof({ arbitrary: fc.constant(false), weight: 5 }, { arbitrary: fc.constant(true), weight: 1 }),
    openFails: fc.oneof({ arbitrary: fc.constant(false), weight: 5 }, { arbitrary: fc.constant(true), weight: 1 }),
    end: fc.constantFrom("ok", "ok", "temp", "perm"),
    authSuccessData: fc.boolean(),
    disconnectOnAuthFailure: fc.boolean(),
  }),
});

// ---------------------------------------------------------------- chunking

export interface Chunking {
  /** "one": a single receive(); "sizes": cut by the (cycled) sizes; "bytes": byte by byte. */
  readonly mode: "one" | "sizes" | "bytes";
  readonly sizes: readonly number[];
  /** Bit i set: let the event loop turn after chunk i (mod 31). */
  readonly yields: number;
}

export const chunking: fc.Arbitrary<Chunking> = fc.record({
  mode: fc.constantFrom("one", "sizes", "sizes", "bytes"),
  sizes: fc.array(fc.integer({ min: 1, max: 80 }), { minLength: 1, maxLength: 6 }),
  yields: fc.integer({ min: 0, max: 0x7fffffff }),
});

/** Cut `input` as `c` says (byte by byte only for short inputs). */
export function cut(input: Buffer, c: Chunking): Buffer[] {
  if (input.length === 0) return [];
  if (c.mode === "one") return [input];
  const sizes = c.mode === "bytes" && input.length <= 4096 ? [1] : c.sizes;
  const out: Buffer[] = [];
  let i = 0;
  for (let k = 0; i < input.length; k++) {
    const n = sizes[k % sizes.length];
    out.push(input.subarray(i, i + n));
    i += n;
  }
  return out;
}

export function yieldsAfter(c: Chunking, i: number): boolean {
  return ((c.yields >>> (i % 31)) & 1) === 1;
}
