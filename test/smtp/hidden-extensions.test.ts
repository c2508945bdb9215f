/**
 * A listener's hidden extensions (`listeners[].hide`): not advertised, and
 * refused as not implemented when used anyway.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { EXTENSIONS, type Extension } from "../../src/smtp/extensions.ts";
import { PLAIN_OK, TLS_INFO, converse, makeSession, parseReplies, ready, say, settle, type SetupOptions } from "./harness.ts";

const TLS: SetupOptions = { implicitTls: TLS_INFO, startTlsAvailable: false };

async function ehloKeywords(o: SetupOptions): Promise<string[]> {
  const s = makeSession(o);
  s.session.start();
  await settle(s);
  const [r] = await converse(s, "EHLO client.test\r\n");
  return r.lines.slice(1).map((l) => l.split(" ")[0]);
}

describe("not advertised", () => {
  test("each keyword can be hidden alone, and only it disappears", async () => {
    const plain = await ehloKeywords({});
    const tls = await ehloKeywords(TLS);
    for (const ext of EXTENSIONS) {
      const base = ext === "STARTTLS" ? plain : tls;
      const o = ext === "STARTTLS" ? { hide: [ext] } : { ...TLS, hide: [ext] };
      assert.ok(base.includes(ext), `${ext} is advertised when not hidden`);
      assert.deepEqual(await ehloKeywords(o), base.filter((k) => k !== ext), ext);
    }
  });

  test("all hidden: EHLO gives only the greeting line", async () => {
    assert.deepEqual(await ehloKeywords({ ...TLS, hide: [...EXTENSIONS] }), []);
  });
});

describe("refused as not implemented", () => {
  const tx = "MAIL FROM:<a@b.test>\r\n";
  const cases: [Extension, string, string][] = [
    ["SIZE", "MAIL FROM:<a@b.test> SIZE=100\r\n", "555 5.5.4"],
    ["8BITMIME", "MAIL FROM:<a@b.test> BODY=8BITMIME\r\n", "555 5.5.4"],
    ["SMTPUTF8", "MAIL FROM:<a@b.test> SMTPUTF8\r\n", "555 5.5.4"],
    ["DSN", "MAIL FROM:<a@b.test> RET=HDRS\r\n", "555 5.5.4"],
    ["DSN", "MAIL FROM:<a@b.test> ENVID=x\r\n", "555 5.5.4"],
    ["REQUIRETLS", "MAIL FROM:<a@b.test> REQUIRETLS\r\n", "555 5.5.4"],
    ["AUTH", "MAIL FROM:<a@b.test> AUTH=<>\r\n", "555 5.5.4"],
  ];
  for (const [ext, line, want] of cases) {
    test(`${ext} hidden: ${line.trim()} → ${want}; accepted when not hidden`, async () => {
      assert.deepEqual(await say(await ready({ ...TLS, hide: [ext] }), line), [want]);
      assert.deepEqual(await say(await ready(TLS), line), ["250 2.1.0"]);
    });
  }

  test("DSN hidden: NOTIFY and ORCPT on RCPT → 555 5.5.4", async () => {
    const s = await ready({ hide: ["DSN"] });
    await say(s, tx);
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test> NOTIFY=SUCCESS\r\n"), ["555 5.5.4"]);
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test> ORCPT=rfc822;c@d.test\r\n"), ["555 5.5.4"]);
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test>\r\n"), ["250 2.1.5"]);
    assert.equal(s.handler.rcpts.length, 1);
  });

  test("SMTPUTF8 hidden: a non-ASCII address is refused with 553 5.6.7 (RFC 6531 §3.4)", async () => {
    assert.deepEqual(await say(await ready({ hide: ["SMTPUTF8"] }), "MAIL FROM:<dörte@b.test>\r\n"), ["553 5.6.7"]);
  });

  test("SIZE hidden: the limit still holds while data streams in", async () => {
    const s = await ready({ hide: ["SIZE"], limits: { messageSize: 10 } });
    await say(s, `${tx}RCPT TO:<c@d.test>\r\n`);
    assert.deepEqual(await say(s, "DATA\r\n"), ["354"]);
    assert.deepEqual(await say(s, "more than ten octets\r\n.\r\n"), ["552 5.3.4"]);
  });

  test("CHUNKING hidden: BDAT → 521 5.5.1 and the connection is closed; its chunk is never read", async () => {
    const s = await ready({ hide: ["CHUNKING"] });
    await say(s, `${tx}RCPT TO:<c@d.test>\r\n`);
    assert.deepEqual(await say(s, "BDAT 6 LAST\r\nQUIT\r\n"), ["521 5.5.1"]);
    assert.equal(s.transport.closed, true);
    assert.equal(s.handler.messages.length, 0);
  });

  test("STARTTLS hidden: STARTTLS → 502 5.5.1, no handshake", async () => {
    const s = await ready({ hide: ["STARTTLS"] });
    assert.deepEqual(await say(s, "STARTTLS\r\n"), ["502 5.5.1"]);
    assert.equal(s.transport.startTlsCalls, 0);
  });

  test("AUTH hidden: AUTH → 503 5.5.1, not authenticated", async () => {
    const s = await ready({ ...TLS, hide: ["AUTH"] });
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["503 5.5.1"]);
    assert.equal(s.session.state.authUser, null);
  });

  test("ENHANCEDSTATUSCODES hidden: replies carry no enhanced status code (RFC 2034)", async () => {
    const s = makeSession({ hide: ["ENHANCEDSTATUSCODES"] });
    s.session.start();
    await settle(s);
    await converse(s, "EHLO c.test\r\n");
    const text = (await converse(s, "NOOP\r\nRSET x\r\nMAIL FROM:<a@b.test>\r\n")).map((r) => r.lines.at(-1));
    assert.deepEqual(text, ["Ok", "Syntax: RSET", "Ok"]);
    assert.deepEqual(parseReplies(s.transport.written).map((r) => r.short), ["220", "250", "250", "501", "250"]);
  });

  test("LIMITS hidden: the limits still hold", async () => {
    const s = await ready({ hide: ["LIMITS"], limits: { recipients: 1 } });
    await say(s, tx);
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test>\r\nRCPT TO:<e@d.test>\r\n"), ["250 2.1.5", "452 4.5.3"]);
  });

  test("PIPELINING hidden: pipelined commands are still answered in order", async () => {
    const s = await ready({ hide: ["PIPELINING"] });
    assert.deepEqual(await say(s, `${tx}RCPT TO:<c@d.test>\r\nNOOP\r\n`), ["250 2.1.0", "250 2.1.5", "250 2.0.0"]);
  });
});
