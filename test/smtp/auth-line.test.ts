/**
 * RFC 4954 §4: an AUTH command line with its initial response may be up to
 * 12288 octets whatever limits.commandLine says; other commands keep
 * limits.commandLine.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { TLS_INFO, ready, say } from "./harness.ts";

/** A PLAIN response the harness accepts as alice, made `size` octets long by its authorization identity. */
function longPlain(size: number): string {
  const tail = "\0alice\0secret";
  return Buffer.from("z".repeat(size - tail.length) + tail).toString("base64");
}

const tls = { implicitTls: TLS_INFO, startTlsAvailable: false, limits: { commandLine: 512 } };

describe("AUTH command lines up to 12288 octets (limits.commandLine 512)", () => {
  test("AUTH PLAIN with a 1000-octet initial response → 235, in any case of the verb", async () => {
    for (const verb of ["AUTH", "auth", "Auth"]) {
      const s = await ready(tls);
      const line = `${verb} PLAIN ${longPlain(1000)}\r\n`;
      assert.ok(line.length > 512);
      assert.deepEqual(await say(s, line), ["235 2.7.0"], verb);
      assert.equal(s.session.state.authUser, "alice");
    }
  });

  test("the same line byte by byte → 235 (a partial AUTH line waits without spinning)", async () => {
    const s = await ready(tls);
    assert.deepEqual(await say(s, `AUTH PLAIN ${longPlain(1000)}\r\n`, { byteByByte: true }), ["235 2.7.0"]);
  });

  test("a partial AUTH line longer than limits.commandLine is held until its CRLF", async () => {
    const s = await ready(tls);
    const line = `AUTH PLAIN ${longPlain(3000)}\r\n`;
    assert.deepEqual(await say(s, line.slice(0, 2000)), []);
    assert.equal(s.transport.closed, false);
    assert.deepEqual(await say(s, line.slice(2000)), ["235 2.7.0"]);
  });

  test("an AUTH line of exactly 12288 octets is read; one octet more → 500 5.5.6 and no exchange starts", async () => {
    const s = await ready(tls);
    const exact = `AUTH PLAIN ${"A".repeat(12288 - 13)}\r\n`;
    assert.equal(exact.length, 12288);
    assert.deepEqual(await say(s, exact), ["501 5.5.2"], "read and decoded (not base64 of anything: 501)");
    assert.deepEqual(await say(s, `AUTH PLAIN ${"A".repeat(12288 - 12)}\r\n`), ["500 5.5.6"]);
    assert.deepEqual(await say(s, "NOOP\r\n"), ["250 2.0.0"], "the next line is a command, not an AUTH response");
  });

  test("other commands keep limits.commandLine", async () => {
    const s = await ready(tls);
    assert.deepEqual(await say(s, `NOOP ${"x".repeat(600)}\r\n`), ["500 5.5.6"]);
    assert.deepEqual(await say(s, `MAIL FROM:<${"a".repeat(600)}@b.test>\r\n`), ["500 5.5.6"]);
    assert.deepEqual(await say(s, `AUTHX ${"x".repeat(600)}\r\n`), ["500 5.5.6"], "AUTH must be the whole verb");
  });

  test("a response to 334 over 12288 octets fails the AUTH command with 500 5.5.6 (RFC 4954 §4); the next line is a command", async () => {
    const s = await ready(tls);
    assert.deepEqual(await say(s, "AUTH PLAIN\r\n"), ["334"]);
    assert.deepEqual(await say(s, `${"A".repeat(12288)}\r\n`), ["500 5.5.6"]);
    assert.deepEqual(await say(s, "NOOP\r\n"), ["250 2.0.0"]);
    assert.deepEqual(await say(s, `AUTH PLAIN ${longPlain(100)}\r\n`), ["235 2.7.0"]);
  });
});
