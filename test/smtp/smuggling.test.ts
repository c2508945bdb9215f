/**
 * SMTP smuggling (CVE-2023-51764/5/6 and the SEC Consult variants): only
 * <CRLF>.<CRLF> may end DATA. Every other "end of data" a sloppy server
 * might accept must stay content, and the commands after it must never run.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import type { BareNewlinePolicy } from "../../src/smtp/data-decoder.ts";
import { authenticated, parseReplies, ready, say, settle, type Setup } from "./harness.ts";

const PREFIX = "Subject: hi\r\n\r\nhello";
const SMUGGLED = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\nDATA\r\nSubject: evil\r\n\r\nevil\r\n";
const END = ".\r\nQUIT\r\n";

interface Variant {
  readonly name: string;
  readonly payload: string;
  /** The content stored under "normalize". */
  readonly normalized: string;
  /** The variant holds a bare CR or LF ("reject" refuses the message). */
  readonly bare: boolean;
}

const variants: Variant[] = [
  { name: "\\n.\\n", payload: `${PREFIX}\n.\n${SMUGGLED}`, normalized: `${PREFIX}\r\n.\r\n${SMUGGLED}`, bare: true },
  { name: "\\n.\\r\\n", payload: `${PREFIX}\n.\r\n${SMUGGLED}`, normalized: `${PREFIX}\r\n.\r\n${SMUGGLED}`, bare: true },
  { name: "\\r\\n.\\n", payload: `${PREFIX}\r\n.\n${SMUGGLED}`, normalized: `${PREFIX}\r\n.\r\n${SMUGGLED}`, bare: true },
  { name: "\\r.\\r", payload: `${PREFIX}\r.\r${SMUGGLED}`, normalized: `${PREFIX}\r.\r${SMUGGLED}`, bare: true },
  // A line starting with "." loses it (RFC 5321 §4.5.2), whatever follows.
  { name: "\\r\\n.\\r", payload: `${PREFIX}\r\n.\r${SMUGGLED}`, normalized: `${PREFIX}\r\n\r${SMUGGLED}`, bare: true },
  { name: "\\r.\\r\\n", payload: `${PREFIX}\r.\r\n${SMUGGLED}`, normalized: `${PREFIX}\r.\r\n${SMUGGLED}`, bare: true },
  { name: "\\r\\n\\x00.\\r\\n", payload: `${PREFIX}\r\n\x00.\r\n${SMUGGLED}`, normalized: `${PREFIX}\r\n\x00.\r\n${SMUGGLED}`, bare: false },
  { name: ".\\n right after 354", payload: `.\n${SMUGGLED}`, normalized: `.\r\n${SMUGGLED}`, bare: true },
  { name: "\\n.\\n right after 354", payload: `\n.\n${SMUGGLED}`, normalized: `\r\n.\r\n${SMUGGLED}`, bare: true },
  { name: "\\r\\n.\\r\\r\\n", payload: `${PREFIX}\r\n.\r\r\n${SMUGGLED}`, normalized: `${PREFIX}\r\n\r\r\n${SMUGGLED}`, bare: true },
];

async function inData(policy: BareNewlinePolicy, auth = false): Promise<Setup> {
  const s = auth ? await authenticated({ bareNewline: policy }) : await ready({ bareNewline: policy });
  const r = await say(s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
  assert.deepEqual(r, ["250 2.1.0", "250 2.1.5", "354"]);
  return s;
}

/** Feed the payload (plus the real end and QUIT) in the given chunks; return the replies. */
async function feed(s: Setup, chunks: Buffer[]): Promise<string[]> {
  const before = s.transport.written.length;
  for (const c of chunks) {
    s.session.receive(c);
    // Let the engine work between packets sometimes, as a socket would.
    if (c.length % 3 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await settle(s);
  return parseReplies(s.transport.written.slice(before)).map((r) => r.short);
}

function check(s: Setup, v: Variant, policy: BareNewlinePolicy, replies: string[], how: string): void {
  const label = `${v.name} (${policy}, ${how})`;
  // Exactly one transaction was started: the evil MAIL never reached the handler.
  assert.equal(s.handler.mails.length, 1, label);
  assert.equal(s.handler.rcpts.length, 1, label);
  assert.equal(s.handler.messages.length, 1, label);
  const m = s.handler.messages[0];
  if (policy === "normalize" || !v.bare) {
    assert.deepEqual(replies, ["250 2.0.0", "221 2.0.0"], label);
    assert.equal(m.ended, true, label);
    assert.equal(m.content.toString("latin1"), v.normalized, label);
  } else {
    assert.deepEqual(replies, ["550 5.5.2", "221 2.0.0"], label);
    assert.equal(m.ended, false, label);
    assert.equal(m.aborted, true, label);
  }
}

const full = (v: Variant): Buffer => Buffer.from(v.payload + END, "latin1");

describe("SMTP smuggling", () => {
  for (const policy of ["normalize", "reject"] as const) {
    for (const v of variants) {
      test(`${v.name} is content, not an end (${policy}): one packet`, async () => {
        const s = await inData(policy);
        check(s, v, policy, await feed(s, [full(v)]), "one packet");
      });

      test(`${v.name} is content, not an end (${policy}): byte by byte`, async () => {
        const s = await inData(policy);
        const bytes = full(v);
        check(s, v, policy, await feed(s, [...bytes].map((b) => Buffer.of(b))), "byte by byte");
      });

      test(`${v.name} is content, not an end (${policy}): split at every position`, async () => {
        const bytes = full(v);
        for (let cut = 1; cut < bytes.length; cut++) {
          const s = await inData(policy);
          check(s, v, policy, await feed(s, [bytes.subarray(0, cut), bytes.subarray(cut)]), `split at ${cut}`);
        }
      });
    }
  }

  test("an authenticated client pipelining the whole dialogue, split at every position", async () => {
    for (const v of variants) {
      const dialogue = Buffer.from(`MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n${v.payload}${END}`, "latin1");
      for (let cut = 1; cut < dialogue.length; cut += 3) {
        const s = await authenticated();
        const replies = await feed(s, [dialogue.subarray(0, cut), dialogue.subarray(cut)]);
        assert.deepEqual(replies.slice(0, 3), ["250 2.1.0", "250 2.1.5", "354"], `${v.name} split at ${cut}`);
        check(s, v, "normalize", replies.slice(3), `auth split at ${cut}`);
      }
    }
  });

  test("the real end right after a smuggling attempt still ends the data", async () => {
    for (const policy of ["normalize", "reject"] as const) {
      const s = await inData(policy);
      const r = await say(s, Buffer.from("x\n.\r\n.\r\nNOOP\r\n", "latin1"));
      // "\n.\r\n" is content; the ".\r\n" after it follows a real CRLF and ends the data.
      assert.deepEqual(r, [policy === "normalize" ? "250 2.0.0" : "550 5.5.2", "250 2.0.0"]);
      if (policy === "normalize") assert.equal(s.handler.messages[0].content.toString(), "x\r\n.\r\n");
    }
  });

  test("\"reject\" refuses the message but the session goes on", async () => {
    const s = await inData("reject");
    assert.deepEqual(await say(s, "bad\nline\r\n.\r\n"), ["550 5.5.2"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"), ["250 2.1.0", "250 2.1.5", "354"]);
    assert.deepEqual(await say(s, "good\r\n.\r\n"), ["250 2.0.0"]);
    assert.equal(s.handler.ended.length, 1);
    assert.equal(s.handler.ended[0].content.toString(), "good\r\n");
  });
});
