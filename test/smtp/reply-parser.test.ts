import { test } from "node:test";
import assert from "node:assert/strict";
import { ReplyParser, ReplyParseError } from "../../src/smtp/reply-parser.ts";
import { replyText, type Reply } from "../../src/smtp/reply.ts";

function parseAll(text: string | Buffer, split = 0): Reply[] {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text, "utf8");
  const p = new ReplyParser();
  if (split === 0) return p.push(bytes);
  const out: Reply[] = [];
  for (let i = 0; i < bytes.length; i += split) out.push(...p.push(bytes.subarray(i, i + split)));
  return out;
}

const EHLO = "250-mx.example.test Hello x\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250 8BITMIME\r\n";

test("single-line reply with and without an enhanced status code", () => {
  assert.deepEqual(parseAll("220 mx.example.test Petrel ESMTP\r\n"), [{ code: 220, lines: ["mx.example.test Petrel ESMTP"] }]);
  assert.deepEqual(parseAll("250 2.0.0 Ok: queued as ABC\r\n"), [{ code: 250, status: "2.0.0", lines: ["Ok: queued as ABC"] }]);
  assert.deepEqual(parseAll("550 5.1.1\r\n"), [{ code: 550, status: "5.1.1", lines: [""] }]);
  assert.deepEqual(parseAll("250\r\n"), [{ code: 250, lines: [""] }]);
});

test("an enhanced code of another class than the reply is text, not a status", () => {
  assert.deepEqual(parseAll("250 5.1.1 odd\r\n"), [{ code: 250, lines: ["5.1.1 odd"] }]);
  assert.deepEqual(parseAll("250 2.0.0.1 is an address\r\n"), [{ code: 250, lines: ["2.0.0.1 is an address"] }]);
});

test("multi-line reply, every split gives the same replies (byte by byte too)", () => {
  const two = EHLO + "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n";
  const whole = parseAll(two);
  assert.deepEqual(whole, [
    { code: 250, lines: ["mx.example.test Hello x", "PIPELINING", "SIZE 26214400", "8BITMIME"] },
    { code: 550, status: "5.7.1", lines: ["first", "second", "third"] },
  ]);
  for (const split of [1, 2, 3, 7, 13]) assert.deepEqual(parseAll(two, split), whole, `split ${split}`);
});

test("bare LF ends a line; CR inside a line is text; pending and reset", () => {
  assert.deepEqual(parseAll("250-a\n250 b\n"), [{ code: 250, lines: ["a", "b"] }]);
  assert.deepEqual(parseAll("250 a\rb\r\n"), [{ code: 250, lines: ["a\rb"] }]);
  const p = new ReplyParser();
  assert.deepEqual(p.push(Buffer.from("220 go ahead\r\n250-inj")), [{ code: 220, lines: ["go ahead"] }]);
  assert.equal(p.pending, true);
  p.reset();
  assert.equal(p.pending, false);
  assert.deepEqual(p.push(Buffer.from("250 ok\r\n")), [{ code: 250, lines: ["ok"] }]);
});

test("malformed lines and mismatched codes are protocol errors, and the parser stays failed", () => {
  for (const bad of ["hello\r\n", "25 x\r\n", "2500 x\r\n", "250x\r\n", "650 x\r\n", "150 x\r\n", "250-a\r\n251 b\r\n"]) {
    const p = new ReplyParser();
    assert.throws(() => p.push(Buffer.from(bad)), ReplyParseError, JSON.stringify(bad));
    assert.throws(() => p.push(Buffer.from("250 ok\r\n")), ReplyParseError);
  }
});

test("limits: line length and lines per reply", () => {
  const p = new ReplyParser({ maxLine: 100, maxLines: 5 });
  assert.deepEqual(p.push(Buffer.from(`250 ${"x".repeat(96)}\r\n`)).length, 1); // exactly 100 octets
  assert.throws(() => new ReplyParser({ maxLine: 100 }).push(Buffer.from(`250 ${"x".repeat(97)}\r\n`)), /longer than 100/);
  // A line that never ends is refused as soon as it is too long, not when it ends.
  const q = new ReplyParser({ maxLine: 100 });
  q.push(Buffer.from("250 " + "x".repeat(50)));
  assert.throws(() => q.push(Buffer.from("x".repeat(60))), /longer than 100/);
  assert.throws(() => new ReplyParser({ maxLines: 5 }).push(Buffer.from("250-a\r\n".repeat(6))), /more than 5 lines/);
  // defaults: 8 KiB, 100 lines
  assert.throws(() => new ReplyParser().push(Buffer.from(`250 ${"x".repeat(8200)}\r\n`)), /8192/);
  assert.equal(new ReplyParser().push(Buffer.from("250-a\r\n".repeat(99) + "250 z\r\n")).length, 1);
  assert.throws(() => new ReplyParser().push(Buffer.from("250-a\r\n".repeat(100) + "250 z\r\n")), /100 lines/);
});

test("UTF-8 text is decoded; replyText joins a reply into one line", () => {
  assert.deepEqual(parseAll("550 5.1.1 <jörg@example.test>: unknown\r\n"), [{ code: 550, status: "5.1.1", lines: ["<jörg@example.test>: unknown"] }]);
  assert.equal(replyText({ code: 550, status: "5.7.1", lines: ["a", "b"] }), "550 5.7.1 a b");
  assert.equal(replyText({ code: 220, lines: [""] }), "220");
});
