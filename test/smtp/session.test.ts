import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { reply } from "../../src/smtp/reply.ts";
import { MAX_UNTERMINATED_LINE } from "../../src/smtp/session.ts";
import {
  FakeHandler, PLAIN_BAD, PLAIN_OK, TLS_INFO, authenticated, converse, makeSession, parseReplies, ready, say, settle,
} from "./harness.ts";

const TX = "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n";

describe("greeting and EHLO", () => {
  test("greeting is 220 with the host name", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    assert.equal(s.transport.written, "220 mx.test ESMTP Petrel\r\n");
  });

  test("EHLO lists exactly the extensions of a plaintext session with STARTTLS", async () => {
    const s = makeSession();
    s.session.start();
    const [r] = await converse(s, "EHLO client.test\r\n");
    assert.equal(r.code, 250);
    assert.deepEqual(r.lines, [
      "mx.test Hello client.test",
      "PIPELINING",
      "SIZE 10000",
      "8BITMIME",
      "SMTPUTF8",
      "ENHANCEDSTATUSCODES",
      "CHUNKING",
      "DSN",
      "STARTTLS",
      "LIMITS RCPTMAX=3 MAILMAX=5",
    ]);
  });

  test("EHLO without STARTTLS available offers neither STARTTLS nor AUTH", async () => {
    const s = makeSession({ startTlsAvailable: false });
    s.session.start();
    const [r] = await converse(s, "EHLO client.test\r\n");
    assert.ok(!r.lines.includes("STARTTLS"));
    assert.ok(!r.lines.some((l) => l.startsWith("AUTH")));
    assert.ok(!r.lines.includes("REQUIRETLS"));
  });

  test("EHLO over TLS offers AUTH and REQUIRETLS, not STARTTLS", async () => {
    const s = makeSession({ implicitTls: TLS_INFO, startTlsAvailable: false, authMechanisms: ["PLAIN", "LOGIN"] });
    s.session.start();
    const [r] = await converse(s, "EHLO client.test\r\n");
    assert.deepEqual(r.lines.slice(1), [
      "PIPELINING", "SIZE 10000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN",
      "AUTH PLAIN LOGIN", "REQUIRETLS", "LIMITS RCPTMAX=3 MAILMAX=5",
    ]);
  });

  test("EHLO over TLS without mechanisms offers no AUTH", async () => {
    const s = makeSession({ implicitTls: TLS_INFO, authMechanisms: [] });
    s.session.start();
    const [r] = await converse(s, "EHLO client.test\r\n");
    assert.ok(!r.lines.some((l) => l.startsWith("AUTH")));
    assert.ok(r.lines.includes("REQUIRETLS"));
  });

  test("HELO gives 250 without extensions", async () => {
    const s = makeSession();
    s.session.start();
    const r = await converse(s, "HELO client.test\r\n");
    assert.equal(r.length, 1);
    assert.equal(r[0].code, 250);
    assert.deepEqual(r[0].lines, ["mx.test"]);
  });

  test("verbs are case-insensitive", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    const [e] = await converse(s, "ehlo client.test\r\n");
    assert.equal(e.code, 250);
    assert.deepEqual(await say(s, "MaIl FrOm:<a@b.test>\r\nrcpt to:<c@d.test>\r\n"), ["250 2.1.0", "250 2.1.5"]);
  });

  test("EHLO without a name is a syntax error", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    assert.deepEqual(await say(s, "EHLO\r\n"), ["501 5.5.4"]);
    assert.deepEqual(await say(s, "HELO a b\r\n"), ["501 5.5.4"]);
  });

  test("EHLO resets a transaction", async () => {
    const s = await ready();
    await say(s, TX);
    assert.deepEqual(await say(s, "EHLO again.test\r\n"), ["250"]);
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test>\r\n"), ["503 5.5.1"]);
  });
});

describe("sequencing and simple commands", () => {
  test("MAIL before EHLO → 503", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
  });

  test("RCPT before MAIL, DATA before RCPT, DATA before MAIL, nested MAIL → 503", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test>\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, "DATA\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
    assert.deepEqual(await say(s, "DATA\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert.equal(s.handler.mails.length, 1);
  });

  test("syntax errors → 501", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "MAIL TO:<a@b.test>\r\n"), ["501 5.5.4"]);
    assert.deepEqual(await say(s, "MAIL FROM:a@b.test\r\n"), ["501 5.1.7"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
    assert.deepEqual(await say(s, "RCPT TO:<>\r\n"), ["501 5.1.7"]);
    assert.deepEqual(await say(s, "RCPT FROM:<c@d.test>\r\n"), ["501 5.5.4"]);
    assert.deepEqual(await say(s, "DATA now\r\n"), ["501 5.5.4"]);
    assert.deepEqual(await say(s, "RSET now\r\n"), ["501 5.5.4"]);
    assert.deepEqual(await say(s, "VRFY\r\n"), ["501 5.5.4"]);
  });

  test("unknown → 500 5.5.2, empty line → 500 5.5.2, not implemented → 502 5.5.1", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "FOO bar\r\n"), ["500 5.5.2"]);
    assert.deepEqual(await say(s, "\r\n"), ["500 5.5.2"]);
    assert.deepEqual(await say(s, "EXPN staff\r\n"), ["502 5.5.1"]);
    assert.deepEqual(await say(s, "TURN\r\n"), ["502 5.5.1"]);
  });

  test("VRFY → 252, HELP → 214, NOOP → 250", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "VRFY bob\r\n"), ["252 2.0.0"]);
    assert.deepEqual(await say(s, "HELP\r\n"), ["214 2.0.0"]);
    assert.deepEqual(await say(s, "NOOP\r\n"), ["250 2.0.0"]);
  });

  test("RSET resets the transaction", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, TX), ["250 2.1.0", "250 2.1.5"]);
    assert.deepEqual(await say(s, "RSET\r\n"), ["250 2.0.0"]);
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test>\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
  });

  test("QUIT → 221 and close; nothing after is read", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "QUIT\r\nNOOP\r\n"), ["221 2.0.0"]);
    assert.equal(s.transport.closed, true);
    assert.equal(s.transport.writtenAfterClose, "");
    assert.deepEqual(await say(s, "NOOP\r\n"), []);
  });

  test("handler refusals are passed on", async () => {
    const h = new FakeHandler();
    h.rcptReply = (to) => (to.localPart === "nobody" ? reply(550, "5.1.1", "no such user") : undefined);
    const s = await ready({}, h);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@d.test>\r\nRCPT TO:<c@d.test>\r\n"),
      ["250 2.1.0", "550 5.1.1", "250 2.1.5"]);
    h.mailReply = reply(451, "4.7.1", "later");
    await say(s, "RSET\r\n");
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["451 4.7.1"]);
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test>\r\n"), ["503 5.5.1"]);
  });

  test("asynchronous handler answers keep the order of pipelined replies", async () => {
    const h = new FakeHandler();
    h.async = true;
    const s = await ready({}, h);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@d.test>\r\nDATA\r\n"),
      ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354"]);
    assert.deepEqual(await say(s, "Subject: x\r\n\r\nbody\r\n.\r\n"), ["250 2.0.0"]);
    assert.equal(h.messages[0].content.toString(), "Subject: x\r\n\r\nbody\r\n");
  });
});

describe("MAIL and RCPT parameters", () => {
  test("SIZE over the limit → 552 5.3.4; within → 250", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test> SIZE=10001\r\n"), ["552 5.3.4"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test> SIZE=10000\r\n"), ["250 2.1.0"]);
    assert.equal(s.handler.mails[0].params.size, 10000);
  });

  test("unknown parameter → 555 5.5.4", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test> FOO=bar\r\n"), ["555 5.5.4"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test> FOO\r\n"), ["250 2.1.0", "555 5.5.4"]);
  });

  test("ESMTP parameters are refused after HELO", async () => {
    const s = makeSession();
    s.session.start();
    await say(s, "HELO client.test\r\n");
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test> SIZE=10\r\n"), ["555 5.5.4"]);
  });

  test("SMTPUTF8 address needs the SMTPUTF8 parameter", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "MAIL FROM:<jörg@b.test>\r\n"), ["553 5.6.7"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<jörg@d.test>\r\n"), ["250 2.1.0", "553 5.6.7"]);
    await say(s, "RSET\r\n");
    assert.deepEqual(await say(s, "MAIL FROM:<jörg@bücher.test> SMTPUTF8\r\nRCPT TO:<zoë@d.test>\r\n"),
      ["250 2.1.0", "250 2.1.5"]);
    assert.equal(s.handler.mails.at(-1)!.from!.localPart, "jörg");
    assert.equal(s.handler.mails.at(-1)!.params.smtputf8, true);
    assert.equal(s.handler.rcpts.at(-1)!.to.localPart, "zoë");
  });

  test("DSN parameters reach the handler", async () => {
    const s = await ready();
    assert.deepEqual(await say(s,
      "MAIL FROM:<a@b.test> RET=HDRS ENVID=abc+2B1\r\nRCPT TO:<c@d.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c+40d.test\r\n"),
      ["250 2.1.0", "250 2.1.5"]);
    assert.equal(s.handler.mails[0].params.ret, "HDRS");
    assert.equal(s.handler.mails[0].params.envid, "abc+1");
    assert.deepEqual(s.handler.rcpts[0].params.notify, ["SUCCESS", "DELAY"]);
    assert.equal(s.handler.rcpts[0].params.orcpt, "rfc822;c@d.test");
  });

  test("REQUIRETLS is refused without TLS and accepted with it", async () => {
    const plain = await ready();
    assert.deepEqual(await say(plain, "MAIL FROM:<a@b.test> REQUIRETLS\r\n"), ["555 5.5.4"]);
    const tls = await ready({ implicitTls: TLS_INFO });
    assert.deepEqual(await say(tls, "MAIL FROM:<a@b.test> REQUIRETLS\r\n"), ["250 2.1.0"]);
    assert.equal(tls.handler.mails[0].params.requireTls, true);
  });

  test("MAIL AUTH=<> is accepted whenever AUTH is offered; an unauthenticated claim becomes <>", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test> AUTH=<>\r\n"), ["250 2.1.0"]);
    await say(s, "RSET\r\n");
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test> AUTH=mallory@b.test\r\n"), ["250 2.1.0"]);
    assert.equal(s.handler.mails[1].params.auth, "<>");
    const a = await authenticated();
    assert.deepEqual(await say(a, "MAIL FROM:<a@b.test> AUTH=alice@b.test\r\n"), ["250 2.1.0"]);
    assert.equal(a.handler.mails[0].params.auth, "alice@b.test");
  });

  test("too many recipients → 452 4.5.3, the transaction goes on and is not cut off by the error limit", async () => {
    const s = await ready({ limits: { hardErrors: 3 } });
    let input = "MAIL FROM:<a@b.test>\r\n";
    for (let i = 0; i < 10; i++) input += `RCPT TO:<r${i}@d.test>\r\n`;
    const r = await say(s, input);
    assert.deepEqual(r, ["250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", ...Array(7).fill("452 4.5.3")]);
    assert.equal(s.transport.closed, false);
    assert.deepEqual(await say(s, "DATA\r\n"), ["354"]);
    assert.deepEqual(await say(s, "x\r\n.\r\n"), ["250 2.0.0"]);
    assert.equal(s.handler.messages[0].tx.recipients.length, 3);
  });

  test("messagesPerConnection → 421 and close", async () => {
    const s = await ready({ limits: { messagesPerConnection: 2 } });
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await say(s, `${TX}DATA\r\n`), ["250 2.1.0", "250 2.1.5", "354"]);
      assert.deepEqual(await say(s, "x\r\n.\r\n"), ["250 2.0.0"]);
    }
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["421 4.7.0"]);
    assert.equal(s.transport.closed, true);
  });
});

describe("DATA", () => {
  test("354, dot-unstuffing, exact bytes, 250 with the sink's reply", async () => {
    const s = await ready();
    const r = await converse(s, `${TX}DATA\r\n`);
    assert.deepEqual(r.map((x) => x.short), ["250 2.1.0", "250 2.1.5", "354"]);
    const body = "Subject: dots\r\n\r\n..x\r\n...\r\n..\r\nend \x00\xff\r\n";
    const [done] = await converse(s, Buffer.from(`${body}.\r\n`, "latin1"));
    assert.equal(done.short, "250 2.0.0");
    assert.deepEqual(done.lines, ["2.0.0 Ok: queued as TESTID"]);
    assert.equal(s.handler.messages.length, 1);
    assert.equal(s.handler.messages[0].content.toString("latin1"), "Subject: dots\r\n\r\n.x\r\n..\r\n.\r\nend \x00\xff\r\n");
    assert.equal(s.handler.messages[0].ended, true);
    // The session goes on.
    assert.deepEqual(await say(s, "NOOP\r\n"), ["250 2.0.0"]);
  });

  test("the transaction the sink sees has the envelope", async () => {
    const s = await ready();
    await say(s, "MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@d.test>\r\nDATA\r\n");
    await say(s, ".\r\n");
    const m = s.handler.messages[0];
    assert.equal(m.tx.mailFrom, null);
    assert.equal(m.tx.mailParams.body, "8BITMIME");
    assert.deepEqual(m.tx.recipients.map((r) => r.mailbox.localPart), ["c", "e"]);
    assert.equal(m.content.length, 0);
  });

  test("commands pipelined after the final dot are executed", async () => {
    const s = await ready();
    await say(s, `${TX}DATA\r\n`);
    assert.deepEqual(await say(s, "hi\r\n.\r\nMAIL FROM:<x@b.test>\r\nRCPT TO:<y@d.test>\r\nDATA\r\n"),
      ["250 2.0.0", "250 2.1.0", "250 2.1.5", "354"]);
    assert.deepEqual(await say(s, "second\r\n.\r\n"), ["250 2.0.0"]);
    assert.deepEqual(s.handler.messages.map((m) => m.content.toString()), ["hi\r\n", "second\r\n"]);
  });

  test("the body byte by byte gives the same message", async () => {
    const s = await ready();
    await say(s, `${TX}DATA\r\n`, { byteByByte: true });
    const body = "A: b\r\n\r\n..\r\n.x\r\n\r\n";
    assert.deepEqual(await say(s, `${body}.\r\nNOOP\r\n`, { byteByByte: true }), ["250 2.0.0", "250 2.0.0"]);
    assert.equal(s.handler.messages[0].content.toString(), "A: b\r\n\r\n.\r\nx\r\n\r\n");
  });

  test("size exceeded while streaming → 552 5.3.4 after the final dot, sink aborted, session continues", async () => {
    const s = await ready({ limits: { messageSize: 100 } });
    await say(s, `${TX}DATA\r\n`);
    const line = "x".repeat(48) + "\r\n";
    assert.deepEqual(await say(s, line + line), []);
    assert.deepEqual(await say(s, line), []);
    assert.deepEqual(await say(s, line + ".\r\n"), ["552 5.3.4"]);
    assert.equal(s.handler.messages[0].aborted, true);
    assert.equal(s.handler.messages[0].ended, false);
    assert.ok(s.handler.messages[0].content.length <= 100);
    assert.deepEqual(await say(s, `${TX}DATA\r\n`), ["250 2.1.0", "250 2.1.5", "354"]);
    assert.deepEqual(await say(s, "small\r\n.\r\n"), ["250 2.0.0"]);
    assert.equal(s.handler.messages[1].content.toString(), "small\r\n");
  });

  test("exactly the size limit is accepted", async () => {
    const s = await ready({ limits: { messageSize: 100 } });
    await say(s, `${TX}DATA\r\n`);
    assert.deepEqual(await say(s, "x".repeat(98) + "\r\n.\r\n"), ["250 2.0.0"]);
  });

  test("sink end() 451 is passed on and the transaction is over", async () => {
    const h = new FakeHandler();
    h.endReply = reply(451, "4.3.0", "Error: queue file write error");
    const s = await ready({}, h);
    await say(s, `${TX}DATA\r\n`);
    assert.deepEqual(await say(s, "x\r\n.\r\n"), ["451 4.3.0"]);
    assert.deepEqual(await say(s, "RCPT TO:<c@d.test>\r\n"), ["503 5.5.1"]);
  });

  test("openMessage refusal is passed on without a 354", async () => {
    const h = new FakeHandler();
    h.openReply = reply(451, "4.3.0", "spool full");
    const s = await ready({}, h);
    assert.deepEqual(await say(s, `${TX}DATA\r\n`), ["250 2.1.0", "250 2.1.5", "451 4.3.0"]);
  });

  test("RSET aborts nothing stored; disconnect during DATA aborts the sink", async () => {
    const s = await ready();
    await say(s, `${TX}DATA\r\n`);
    await say(s, "partial\r\n");
    await s.session.closed();
    assert.equal(s.handler.messages[0].aborted, true);
    assert.equal(s.handler.messages[0].ended, false);
  });
});

describe("bare line ends and odd bytes in commands", () => {
  test("bare LF in a command line → 500 5.5.2, not executed", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\n"), ["500 5.5.2"]);
    assert.equal(s.handler.mails.length, 0);
    assert.deepEqual(await say(s, "NOOP\r\n"), ["250 2.0.0"]);
  });

  test("bare CR in a command line → 500 5.5.2, not executed", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\rRCPT TO:<c@d.test>\r\n"), ["500 5.5.2"]);
    assert.deepEqual(await say(s, "NOOP\r\r\n"), ["500 5.5.2"]);
    assert.equal(s.handler.mails.length, 0);
  });

  test("NUL bytes in a command → 500 5.5.2", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "NOOP\x00\r\n"), ["500 5.5.2"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\x00\r\n"), ["500 5.5.2"]);
    assert.deepEqual(await say(s, "\x00MAIL FROM:<a@b.test>\r\n"), ["500 5.5.2"]);
    assert.equal(s.handler.mails.length, 0);
  });

  test("invalid UTF-8 → 500 5.5.2", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, Buffer.from("MAIL FROM:<a\xff@b.test>\r\n", "latin1")), ["500 5.5.2"]);
    assert.equal(s.handler.mails.length, 0);
  });
});

describe("command line length", () => {
  test("a line longer than limits.commandLine → 500 5.5.6, then the session goes on", async () => {
    const s = await ready();
    const long = "NOOP " + "x".repeat(600) + "\r\n";
    assert.deepEqual(await say(s, long + "NOOP\r\n"), ["500 5.5.6", "250 2.0.0"]);
    assert.deepEqual(await say(s, long, { byteByByte: true }), ["500 5.5.6"]);
    assert.deepEqual(await say(s, ["NOOP " + "x".repeat(300), "x".repeat(300), "\r\nNOOP\r\n"]), ["500 5.5.6", "250 2.0.0"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
  });

  test("a line of exactly limits.commandLine octets (CRLF included) is accepted", async () => {
    const s = await ready();
    const line = "NOOP " + "x".repeat(512 - 7) + "\r\n";
    assert.equal(line.length, 512);
    assert.deepEqual(await say(s, line), ["250 2.0.0"]);
    assert.deepEqual(await say(s, "NOOP " + "x".repeat(512 - 6) + "\r\n"), ["500 5.5.6"]);
  });

  test("a line that never ends → 421 and close, without holding it", async () => {
    const s = await ready();
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    let fed = 0;
    while (fed < 2 * 1024 * 1024 && !s.transport.closed) {
      s.session.receive(chunk);
      fed += chunk.length;
      await new Promise<void>((resolve) => setImmediate(resolve));
      const queued = (s.session as unknown as { queued: number }).queued;
      assert.ok(queued <= 512, `engine holds ${queued} bytes`);
    }
    await settle(s);
    assert.deepEqual(parseReplies(s.transport.written).map((x) => x.short).slice(2), ["421 4.7.0"]);
    assert.equal(s.transport.closed, true);
    assert.ok(fed > MAX_UNTERMINATED_LINE && fed < MAX_UNTERMINATED_LINE + 2 * 64 * 1024);
  });

  test("a line that never ends, fed in one go → consumed as it comes (never more than a chunk held), 421 and close", async () => {
    const s = await ready();
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    for (let fed = 0; fed < 2 * 1024 * 1024; fed += chunk.length) {
      s.session.receive(chunk);
      const queued = (s.session as unknown as { queued: number }).queued;
      assert.ok(queued <= chunk.length, `engine holds ${queued} bytes`);
    }
    await settle(s);
    assert.deepEqual(parseReplies(s.transport.written).map((x) => x.short).slice(2), ["421 4.7.0"]);
    assert.equal(s.transport.closed, true);
    assert.equal((s.session as unknown as { queued: number }).queued, 0);
  });

  test("a line that never ends, fed faster than the engine reads (it waits on the handler) → pause, then 421 and close", async () => {
    const h = new FakeHandler();
    const s = await ready({}, h);
    h.async = true;
    s.session.receive(Buffer.from("MAIL FROM:<a@b.test>\r\n"));
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    for (let fed = 0; fed < 2 * 1024 * 1024; fed += chunk.length) s.session.receive(chunk);
    assert.ok(s.transport.pauses >= 1);
    await settle(s);
    assert.deepEqual(parseReplies(s.transport.written).map((x) => x.short).slice(2), ["250 2.1.0", "421 4.7.0"]);
    assert.equal(s.transport.closed, true);
    assert.equal((s.session as unknown as { queued: number }).queued, 0);
  });
});

describe("pipelining", () => {
  test("MAIL, RCPT, DATA in one packet → 250 250 354", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, `${TX}DATA\r\n`), ["250 2.1.0", "250 2.1.5", "354"]);
  });

  test("DATA and the body in one packet from an unauthenticated client → 554 5.5.0, nothing stored", async () => {
    const s = await ready();
    await say(s, TX);
    assert.deepEqual(await say(s, "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n"), ["554 5.5.0"]);
    assert.equal(s.handler.messages.length, 0);
    // The rest of the packet was not read as commands.
    assert.deepEqual(await say(s, "NOOP\r\n"), ["250 2.0.0"]);
  });

  test("an authenticated client may pipeline the body after DATA", async () => {
    const s = await authenticated();
    assert.deepEqual(await say(s, `${TX}DATA\r\nbody\r\n.\r\n`), ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]);
    assert.equal(s.handler.messages[0].content.toString(), "body\r\n");
  });

  test("EHLO followed by MAIL in one packet → 554 5.5.0", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    assert.deepEqual(await say(s, "EHLO x\r\nMAIL FROM:<a@b.test>\r\n"), ["554 5.5.0"]);
    assert.equal(s.handler.mails.length, 0);
  });

  test("data before the greeting (early talker) → 554 and close", async () => {
    const s = makeSession();
    s.session.receive(Buffer.from("EHLO x\r\n"));
    s.session.start();
    await settle(s);
    assert.deepEqual(parseReplies(s.transport.written).map((r) => r.short), ["554 5.5.0"]);
    assert.equal(s.transport.closed, true);
  });
});

describe("STARTTLS", () => {
  test("220, bytes pipelined after STARTTLS are discarded (CVE-2011-0411), startTls() called", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n"), ["220 2.0.0"]);
    assert.equal(s.transport.startTlsCalls, 1);
    // More plaintext before the handshake ends is ignored too.
    assert.deepEqual(await say(s, "RCPT TO:<v@y.test>\r\n"), []);
    s.session.tlsEstablished(TLS_INFO);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert.equal(s.handler.mails.length, 0);
    const [e] = await converse(s, "EHLO client.test\r\n");
    assert.ok(e.lines.includes("AUTH PLAIN"));
    assert.ok(e.lines.includes("REQUIRETLS"));
    assert.ok(!e.lines.includes("STARTTLS"));
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
    assert.deepEqual(s.handler.mails.map((m) => m.from?.localPart), ["a"]);
    assert.deepEqual(s.handler.mails[0].state.tls, TLS_INFO);
  });

  test("STARTTLS split byte by byte also works", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "STARTTLS\r\n", { byteByByte: true }), ["220 2.0.0"]);
    assert.equal(s.transport.startTlsCalls, 1);
  });

  test("STARTTLS twice → 503", async () => {
    const s = await ready();
    await say(s, "STARTTLS\r\n");
    s.session.tlsEstablished(TLS_INFO);
    assert.deepEqual(await say(s, "STARTTLS\r\n"), ["503 5.5.1"]);
    assert.equal(s.transport.startTlsCalls, 1);
  });

  test("STARTTLS inside a transaction → 503", async () => {
    const s = await ready();
    await say(s, "MAIL FROM:<a@b.test>\r\n");
    assert.deepEqual(await say(s, "STARTTLS\r\n"), ["503 5.5.1"]);
    assert.equal(s.transport.startTlsCalls, 0);
  });

  test("STARTTLS not offered → 502", async () => {
    const s = await ready({ startTlsAvailable: false });
    assert.deepEqual(await say(s, "STARTTLS\r\n"), ["502 5.5.1"]);
  });
});

describe("AUTH", () => {
  test("over plaintext → 538 5.7.11", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["538 5.7.11"]);
  });

  test("PLAIN with an initial response → 235 2.7.0, then the state carries the user", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["235 2.7.0"]);
    await say(s, "MAIL FROM:<a@b.test>\r\n");
    assert.equal(s.handler.mails[0].state.authUser, "alice");
  });

  test("PLAIN without an initial response → 334, then the response", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    const [c] = await converse(s, "AUTH PLAIN\r\n");
    assert.equal(c.code, 334);
    assert.deepEqual(c.lines, [""]);
    assert.deepEqual(await say(s, `${PLAIN_OK}\r\n`), ["235 2.7.0"]);
  });

  test("the AUTH exchange byte by byte", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    assert.deepEqual(await say(s, `AUTH PLAIN\r\n${PLAIN_OK}\r\n`, { byteByByte: true }), ["334", "235 2.7.0"]);
  });

  test("\"*\" cancels → 501 5.0.0", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    assert.deepEqual(await say(s, "AUTH PLAIN\r\n*\r\n"), ["334", "501 5.0.0"]);
    assert.deepEqual(await say(s, "NOOP\r\n"), ["250 2.0.0"]);
  });

  test("bad base64 → 501 5.5.2", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    assert.deepEqual(await say(s, "AUTH PLAIN\r\n!!!!\r\n"), ["334", "501 5.5.2"]);
    assert.deepEqual(await say(s, "AUTH PLAIN abc\r\n"), ["501 5.5.2"]);
  });

  test("wrong password → 535 5.7.8; then a right one works", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_BAD}\r\n`), ["535 5.7.8"]);
    assert.equal(s.handler.authFailures, 1);
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["235 2.7.0"]);
  });

  test("too many failures (handler says so) → 421 and close", async () => {
    const h = new FakeHandler();
    h.disconnectOnAuthFailure = true;
    const s = await ready({ implicitTls: TLS_INFO }, h);
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_BAD}\r\n`), ["535 5.7.8", "421 4.7.0"]);
    assert.equal(s.transport.closed, true);
  });

  test("AUTH twice → 503; unknown mechanism → 504", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    assert.deepEqual(await say(s, "AUTH CRAM-MD5\r\n"), ["504 5.5.4"]);
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["235 2.7.0"]);
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["503 5.5.1"]);
  });

  test("AUTH inside a transaction → 503", async () => {
    const s = await ready({ implicitTls: TLS_INFO });
    await say(s, "MAIL FROM:<a@b.test>\r\n");
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["503 5.5.1"]);
  });

  test("requireAuth: MAIL before AUTH → 530 5.7.0 (plaintext and TLS)", async () => {
    const plain = await ready({ requireAuth: true });
    assert.deepEqual(await say(plain, "MAIL FROM:<a@b.test>\r\n"), ["530 5.7.0"]);
    const tls = await ready({ requireAuth: true, implicitTls: TLS_INFO });
    assert.deepEqual(await say(tls, "MAIL FROM:<a@b.test>\r\n"), ["530 5.7.0"]);
    await say(tls, `AUTH PLAIN ${PLAIN_OK}\r\n`);
    assert.deepEqual(await say(tls, "MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
  });

  test("additional data with success → 334 <data>, empty response → 235", async () => {
    const h = new FakeHandler();
    h.authSuccessData = Buffer.from("server-final");
    const s = await ready({ implicitTls: TLS_INFO }, h);
    const [c] = await converse(s, `AUTH PLAIN ${PLAIN_OK}\r\n`);
    assert.equal(c.code, 334);
    assert.deepEqual(c.lines, [Buffer.from("server-final").toString("base64")]);
    assert.deepEqual(await say(s, "\r\n"), ["235 2.7.0"]);
    await say(s, "MAIL FROM:<a@b.test>\r\n");
    assert.equal(s.handler.mails[0].state.authUser, "alice");
  });

  test("additional data with success, non-empty answer → 501 and not authenticated", async () => {
    const h = new FakeHandler();
    h.authSuccessData = Buffer.from("server-final");
    const s = await ready({ implicitTls: TLS_INFO, requireAuth: true }, h);
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\nAAAA\r\n`), ["334", "501 5.5.2"]);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["530 5.7.0"]);
  });

  test("AUTH is forgotten after STARTTLS (RFC 3207 §4.2)", async () => {
    const s = await ready();
    await say(s, "STARTTLS\r\n");
    s.session.tlsEstablished(TLS_INFO);
    await say(s, "EHLO client.test\r\n");
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["235 2.7.0"]);
  });
});

describe("BDAT", () => {
  test("chunks with and without LAST", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, TX), ["250 2.1.0", "250 2.1.5"]);
    assert.deepEqual(await say(s, "BDAT 5\r\nhello"), ["250 2.0.0"]);
    assert.deepEqual(await say(s, "BDAT 8 LAST\r\n world\r\n"), ["250 2.0.0"]);
    assert.equal(s.handler.messages[0].content.toString(), "hello world\r\n");
    assert.equal(s.handler.messages[0].ended, true);
    assert.match(s.transport.written, /250 2\.0\.0 5 octets received\r\n/);
    assert.match(s.transport.written, /250 2\.0\.0 Ok: queued as TESTID\r\n$/);
  });

  test("pipelined BDATs in one packet, and byte by byte", async () => {
    for (const byteByByte of [false, true]) {
      const s = await ready();
      const r = await say(s, `${TX}BDAT 3\r\nabcBDAT 5\r\n\r\n.\r\nBDAT 2 LAST\r\nz\nNOOP\r\n`, { byteByByte });
      assert.deepEqual(r, ["250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"]);
      assert.equal(s.handler.messages[0].content.toString(), "abc\r\n.\r\nz\r\n");
    }
  });

  test("BDAT 0 LAST", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, `${TX}BDAT 0 LAST\r\n`), ["250 2.1.0", "250 2.1.5", "250 2.0.0"]);
    assert.equal(s.handler.messages[0].content.length, 0);
    assert.equal(s.handler.messages[0].ended, true);
  });

  test("BDAT without MAIL: the chunk is consumed, 503, and a later transaction works", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "BDAT 6\r\nNOOP\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, "BDAT 6 LAST\r\nNOOP\r\n"), ["503 5.5.1"]);
    assert.equal(s.handler.messages.length, 0);
    assert.deepEqual(await say(s, "BDAT 6\r\nNOOP\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, `${TX}BDAT 3 LAST\r\nhi\n`), ["250 2.1.0", "250 2.1.5", "250 2.0.0"]);
    assert.equal(s.handler.messages[0].content.toString(), "hi\r\n");
  });

  test("BDAT without RCPT → 503 until LAST", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\nBDAT 2\r\nhiBDAT 1 LAST\r\n!"), ["250 2.1.0", "503 5.5.1", "503 5.5.1"]);
    assert.equal(s.handler.messages.length, 0);
    assert.deepEqual(await say(s, `${TX}BDAT 1 LAST\r\n!`), ["250 2.1.0", "250 2.1.5", "250 2.0.0"]);
  });

  test("size exceeded → 552 5.3.4, further chunks refused until LAST", async () => {
    const s = await ready({ limits: { messageSize: 10 } });
    await say(s, TX);
    assert.deepEqual(await say(s, "BDAT 8\r\n12345678"), ["250 2.0.0"]);
    assert.deepEqual(await say(s, "BDAT 8\r\n12345678"), ["552 5.3.4"]);
    assert.equal(s.handler.messages[0].aborted, true);
    assert.deepEqual(await say(s, "BDAT 2 LAST\r\nab"), ["552 5.3.4"]);
    assert.deepEqual(await say(s, `${TX}BDAT 2 LAST\r\nab`), ["250 2.1.0", "250 2.1.5", "250 2.0.0"]);
    assert.equal(s.handler.messages[1].content.toString(), "ab\r\n");
  });

  test("DATA after BDAT → 503; RCPT after BDAT → 503", async () => {
    const s = await ready();
    await say(s, `${TX}BDAT 1\r\nx`);
    assert.deepEqual(await say(s, "DATA\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, "RCPT TO:<e@d.test>\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, "RSET\r\n"), ["250 2.0.0"]);
    assert.equal(s.handler.messages[0].aborted, true);
  });

  test("bare LF normalised to CRLF; \"reject\" refuses bare LF and CR with 550 5.5.2", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, `${TX}BDAT 8 LAST\r\na\nb\r\nc\rd`), ["250 2.1.0", "250 2.1.5", "250 2.0.0"]);
    assert.equal(s.handler.messages[0].content.toString(), "a\r\nb\r\nc\rd\r\n");
    for (const body of ["a\nb\r\n", "a\rb\r\n", "ab\r\r\n"]) {
      const r = await ready({ bareNewline: "reject" });
      assert.deepEqual(await say(r, `${TX}BDAT ${body.length} LAST\r\n${body}`), ["250 2.1.0", "250 2.1.5", "550 5.5.2"], JSON.stringify(body));
      assert.equal(r.handler.ended.length, 0);
    }
    const ok = await ready({ bareNewline: "reject" });
    assert.deepEqual(await say(ok, `${TX}BDAT 2\r\na\rBDAT 2 LAST\r\n\nb`), ["250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0"]);
    assert.equal(ok.handler.messages[0].content.toString(), "a\r\nb\r\n");
  });

  test("BDAT with a bad size → 501", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "BDAT x\r\n"), ["501 5.5.4"]);
  });
});

describe("error limits", () => {
  test("hardErrors bad commands → 421 4.7.0 and close", async () => {
    const s = await ready({ limits: { hardErrors: 3 } });
    assert.deepEqual(await say(s, "FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n"), ["500 5.5.2", "500 5.5.2", "500 5.5.2", "421 4.7.0"]);
    assert.equal(s.transport.closed, true);
    assert.equal(s.transport.writtenAfterClose, "");
  });

  test("a delivered message resets the error count (Postfix: errors 'without delivering mail')", async () => {
    const s = await ready({ limits: { hardErrors: 3 } });
    assert.deepEqual(await say(s, "FOO\r\nBAR\r\n"), ["500 5.5.2", "500 5.5.2"]);
    await say(s, `${TX}DATA\r\n`);
    assert.deepEqual(await say(s, "x\r\n.\r\n"), ["250 2.0.0"]);
    assert.deepEqual(await say(s, "FOO\r\nBAR\r\n"), ["500 5.5.2", "500 5.5.2"]);
    assert.equal(s.transport.closed, false);
  });

  test("past the soft limit, replies wait for the injected delay", async () => {
    let delays = 0;
    const s = await ready({ limits: { softErrors: 2 }, errorDelay: async () => { delays++; } });
    await say(s, "FOO\r\nFOO\r\nNOOP\r\n");
    assert.equal(delays, 1);
  });
});

describe("not SMTP", () => {
  test("a TLS ClientHello as first input → 554 and close", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]);
    assert.deepEqual(await say(s, hello), ["554 5.5.0"]);
    assert.equal(s.transport.closed, true);
  });

  test("a TLS ClientHello fed byte by byte → 554 and close", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]);
    assert.deepEqual(await say(s, hello, { byteByByte: true }), ["554 5.5.0"]);
    assert.equal(s.transport.closed, true);
  });

  test("HTTP → 554 and close", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    assert.deepEqual(await say(s, "GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n"), ["554 5.5.0"]);
    assert.equal(s.transport.closed, true);
  });

  test("shutdown → 421 and close", async () => {
    const s = await ready();
    s.session.shutdown("Service shutting down");
    assert.deepEqual(parseReplies(s.transport.written).map((r) => r.short).at(-1), "421 4.3.2");
    assert.equal(s.transport.closed, true);
  });
});

describe("disconnects while the engine waits", () => {
  test("closed() while the sink is writing the last chunk of DATA: no reply, no end(), sink aborted", async () => {
    const h = new FakeHandler();
    const s = await ready({}, h);
    await say(s, `${TX}DATA\r\n`);
    h.async = true;
    s.session.receive(Buffer.from("body\r\n.\r\nNOOP\r\n"));
    await s.session.closed();
    await settle(s);
    assert.equal(h.messages[0].aborted, true);
    assert.equal(h.messages[0].ended, false);
    assert.equal(s.session.phase, "closed");
    assert.ok(!h.events.some((e) => e.name === "protocol-error"), JSON.stringify(h.events));
    assert.deepEqual(parseReplies(s.transport.written).map((r) => r.short).slice(2), ["250 2.1.0", "250 2.1.5", "354"]);
  });

  test("closed() while the sink is writing the last BDAT chunk: no reply, no end(), sink aborted", async () => {
    const h = new FakeHandler();
    const s = await ready({}, h);
    await say(s, `${TX}BDAT 2\r\nab`);
    h.async = true;
    s.session.receive(Buffer.from("BDAT 4 LAST\r\nbody"));
    await new Promise<void>((resolve) => setImmediate(resolve));
    await s.session.closed();
    await settle(s);
    assert.equal(h.messages[0].aborted, true);
    assert.equal(h.messages[0].ended, false);
    assert.equal(s.session.phase, "closed");
    assert.ok(!h.events.some((e) => e.name === "protocol-error"), JSON.stringify(h.events));
  });

  test("closed() while MAIL is being decided: nothing more is said", async () => {
    const h = new FakeHandler();
    h.async = true;
    const s = await ready({}, h);
    const before = s.transport.written;
    s.session.receive(Buffer.from("MAIL FROM:<a@b.test>\r\n"));
    await s.session.closed();
    await settle(s);
    assert.equal(s.transport.written, before);
  });
});

describe("back-pressure", () => {
  test("a slow sink pauses reading and resumes it; the message arrives whole", async () => {
    const h = new FakeHandler();
    const s = await ready({ limits: { messageSize: 2_000_000 } }, h);
    await say(s, `${TX}DATA\r\n`);
    h.async = true;
    const line = Buffer.from("x".repeat(1022) + "\r\n");
    const chunk = Buffer.concat(Array(64).fill(line));
    for (let i = 0; i < 16; i++) s.session.receive(chunk);
    assert.ok(s.transport.pauses >= 1, "paused");
    s.session.receive(Buffer.from(".\r\n"));
    await settle(s);
    assert.equal(s.transport.resumes, s.transport.pauses);
    assert.equal(h.messages[0].content.length, 16 * 64 * 1024);
    assert.equal(parseReplies(s.transport.written).at(-1)!.short, "250 2.0.0");
  });

  test("shutdown() takes an enhanced status code", async () => {
    const s = await ready();
    s.session.shutdown("Error: timeout exceeded", "4.4.2");
    assert.equal(parseReplies(s.transport.written).at(-1)!.short, "421 4.4.2");
    assert.equal(s.transport.closed, true);
  });
});

describe("a whole dialogue byte by byte", () => {
  test("gives the same replies and message as command by command", async () => {
    const dialogue = [
      "EHLO client.test\r\n", "MAIL FROM:<a@b.test> SIZE=100\r\n", "RCPT TO:<c@d.test>\r\n", "DATA\r\n",
      "Subject: x\r\n\r\n..dot\r\n.\r\n", "BDAT 2 LAST\r\nxy", "RSET\r\n", "NOOP\r\n", "QUIT\r\n",
    ];
    const results: { replies: string[]; content: string }[] = [];
    for (const byteByByte of [false, true]) {
      const s = makeSession();
      s.session.start();
      await settle(s);
      const replies: string[] = [];
      for (const step of dialogue) replies.push(...await say(s, step, { byteByByte }));
      results.push({ replies, content: s.handler.messages.map((m) => m.content.toString()).join("|") });
      assert.equal(s.transport.closed, true);
    }
    assert.deepEqual(results[1], results[0]);
    assert.deepEqual(results[0].replies.slice(1), ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "503 5.5.1", "250 2.0.0", "250 2.0.0", "221 2.0.0"]);
    assert.equal(results[0].content, "Subject: x\r\n\r\n.dot\r\n");
  });
});
