/**
 * The line framer alone: lines, limits, the unterminated-line cut-off and
 * the back-pressure water marks, without a session.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AUTH_LINE, LineFramer, MAX_UNTERMINATED_LINE } from "../../src/smtp/line-framer.ts";

const b = (s: string): Buffer => Buffer.from(s, "latin1");
const text = (l: ReturnType<LineFramer["takeLine"]>): string | null =>
  l === null ? null : typeof l === "string" ? `<${l}>` : l.toString("latin1");

function framer(limit = 512, ...chunks: string[]): LineFramer {
  const f = new LineFramer(limit);
  for (const c of chunks) f.push(b(c));
  return f;
}

describe("lines", () => {
  test("a whole line comes out with its CRLF; what follows stays queued", () => {
    const f = framer(512, "NOOP\r\nQUIT\r\n");
    assert.equal(text(f.takeLine("command")), "NOOP\r\n");
    assert.equal(f.queued, 6);
    assert.equal(text(f.takeLine("command")), "QUIT\r\n");
    assert.equal(f.takeLine("command"), null);
    assert.equal(f.queued, 0);
  });

  test("a line split over chunks is joined; a partial line waits", () => {
    const f = framer(512, "NO", "O");
    assert.equal(f.takeLine("command"), null, "joined, still no LF");
    assert.equal(f.queued, 3);
    f.push(b("P\r\nRS"));
    assert.equal(text(f.takeLine("command")), "NOOP\r\n");
    assert.equal(f.takeLine("command"), null);
    assert.equal(f.queued, 2);
  });

  test("a bare LF ends a line too, so that the session can refuse it", () => {
    const f = framer(512, "NOOP\nQUIT\r\n");
    assert.equal(text(f.takeLine("command")), "NOOP\n");
  });

  test("a line of exactly the limit (CRLF included) passes; one octet more is too long and skipped up to its LF", () => {
    const exact = "X".repeat(510) + "\r\n";
    assert.equal(text(framer(512, exact).takeLine("command")), exact);
    const f = framer(512, "X".repeat(511) + "\r\nNOOP\r\n");
    assert.equal(f.takeLine("command"), "too long");
    assert.equal(text(f.takeLine("command")), "NOOP\r\n", "the next line is intact");
  });

  test("an over-long line without LF is discarded as it arrives, then reported once its LF comes", () => {
    const f = framer(512, "X".repeat(600));
    assert.equal(f.takeLine("command"), null);
    assert.equal(f.queued, 0, "nothing of it is held");
    f.push(b("X".repeat(100)));
    assert.equal(f.takeLine("command"), null);
    f.push(b("XX\r\nNOOP\r\n"));
    assert.equal(f.takeLine("command"), "too long");
    assert.equal(text(f.takeLine("command")), "NOOP\r\n");
  });

  test(`a line that never ends is given up after ${MAX_UNTERMINATED_LINE} octets`, () => {
    const f = framer(512);
    const chunk = b("A".repeat(64 * 1024));
    let got: ReturnType<LineFramer["takeLine"]> = null;
    let fed = 0;
    while (got === null && fed <= 2 * MAX_UNTERMINATED_LINE) {
      f.push(chunk);
      fed += chunk.length;
      got = f.takeLine("command");
      assert.ok(f.queued <= chunk.length);
    }
    assert.equal(got, "never ends");
    assert.ok(fed > MAX_UNTERMINATED_LINE && fed <= MAX_UNTERMINATED_LINE + 2 * chunk.length, `after ${fed} octets`);
  });

  test(`responses to 334 may be up to ${AUTH_LINE} octets (RFC 4954 §4); commands keep the command limit`, () => {
    const response = "A".repeat(AUTH_LINE - 2) + "\r\n";
    assert.equal(text(framer(512, response).takeLine("auth")), response);
    assert.equal(framer(512, "A".repeat(AUTH_LINE - 1) + "\r\n").takeLine("auth"), "too long");
    assert.equal(framer(512, "NOOP " + "A".repeat(600) + "\r\n").takeLine("command"), "too long");
    assert.equal(new LineFramer(20_000).lineLimit("auth"), 20_000, "a larger command limit applies to AUTH too");
  });

  test(`an AUTH command line (any case) may be up to ${AUTH_LINE} octets; the verb must be AUTH`, () => {
    const line = "auth PLAIN " + "A".repeat(AUTH_LINE - 13) + "\r\n";
    assert.equal(line.length, AUTH_LINE);
    assert.equal(text(framer(512, line).takeLine("command")), line);
    assert.equal(framer(512, "AUTH PLAIN " + "A".repeat(AUTH_LINE - 12) + "\r\n").takeLine("command"), "too long");
    assert.equal(framer(512, "AUTHX " + "A".repeat(600) + "\r\n").takeLine("command"), "too long");
    const partial = framer(512, "AUTH PLAIN " + "A".repeat(600));
    assert.equal(partial.canProgress("command"), false, "a partial AUTH line within its limit waits");
    assert.equal(partial.takeLine("command"), null);
    assert.equal(partial.queued, 611, "and is held, not discarded");
  });
});

describe("progress and back-pressure", () => {
  test("only a single partial chunk within the limit waits for more input", () => {
    assert.equal(framer(512, "NOOP").canProgress("command"), false);
    assert.equal(framer(512, "NO", "OP").canProgress("command"), true, "chunks to join");
    assert.equal(framer(512, "NOOP\r\n").canProgress("command"), true);
    assert.equal(framer(512, "X".repeat(513)).canProgress("command"), true, "over the limit: discard now");
    assert.equal(framer(512, "X".repeat(600)).canProgress("auth"), false, "within the AUTH limit");
  });

  test("above 256 KiB queued the connection should stop reading; below 128 KiB read again", () => {
    const f = framer(512);
    f.push(Buffer.alloc(256 * 1024));
    assert.equal(f.aboveHighWater, false);
    f.push(Buffer.alloc(1));
    assert.equal(f.aboveHighWater, true);
    assert.equal(f.belowLowWater, false);
    f.shift();
    assert.equal(f.belowLowWater, true);
  });

  test("clear() drops everything and says how much; unshift() puts back in front", () => {
    const f = framer(512, "DATA\r\n", "body");
    f.unshift(b("RSET\r\n"));
    assert.equal(text(f.takeLine("command")), "RSET\r\n");
    assert.equal(f.clear(), 10);
    assert.equal(f.queued, 0);
    assert.equal(f.takeLine("command"), null);
  });
});
