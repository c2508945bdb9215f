/**
 * The handler's hooks beyond MAIL/RCPT/DATA, byte by byte: EHLO/HELO asks
 * the handler and a refusal leaves the session as it was; a successful AUTH
 * can be refused; an AUTH failure's answer may come later; the end of every
 * transaction and of the connection is told, once.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { reply, type Reply } from "../../src/smtp/reply.ts";
import type { SessionState } from "../../src/smtp/session-handler.ts";
import { FakeHandler, PLAIN_BAD, PLAIN_OK, TLS_INFO, makeSession, ready, say, settle } from "./harness.ts";

/** Message content and the end-of-data line (no line starts with a dot). */
function dataPayload(content: string): string {
  return `${content}.\r\n`;
}

class HookedHandler extends FakeHandler {
  helos: { name: string; state: SessionState }[] = [];
  heloReply: Reply | undefined;
  loginReply: Reply | undefined;
  logins: string[] = [];
  resets = 0;
  closes = 0;
  disconnectLater = false;

  helo(state: SessionState, name: string): Promise<Reply | undefined> | Reply | undefined {
    this.helos.push({ name, state });
    return this.async ? new Promise((r) => setImmediate(() => r(this.heloReply))) : this.heloReply;
  }
  authenticated(_state: SessionState, user: string): Promise<Reply | undefined> {
    this.logins.push(user);
    return new Promise((r) => setImmediate(() => r(this.loginReply)));
  }
  override authFailed(state: SessionState): Promise<boolean> {
    const now = super.authFailed(state);
    return new Promise((r) => setImmediate(() => r(now || this.disconnectLater)));
  }
  reset(): void {
    this.resets++;
  }
  close(): void {
    this.closes++;
  }
}

describe("EHLO/HELO hook", () => {
  for (const async of [false, true]) {
    test(`a refusal is the reply and the session keeps its state (${async ? "async" : "sync"} handler)`, async () => {
      const h = new HookedHandler();
      h.async = async;
      const s = makeSession({}, h);
      s.session.start();
      await settle(s);
      h.heloReply = reply(550, "5.7.1", "<bad.test>: Helo command rejected");
      assert.deepEqual(await say(s, "EHLO bad.test\r\n"), ["550 5.7.1"]);
      assert.equal(s.session.state.helo, null);
      assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"], "still no HELO");
      h.heloReply = undefined;
      assert.deepEqual(await say(s, "HELO good.test\r\n"), ["250"]);
      assert.equal(s.session.state.helo, "good.test");
      assert.deepEqual(h.helos.map((x) => x.name), ["bad.test", "good.test"]);
    });
  }

  test("the handler sees the name after the syntax check only", async () => {
    const h = new HookedHandler();
    const s = makeSession({}, h);
    s.session.start();
    await settle(s);
    assert.deepEqual(await say(s, "EHLO\r\n"), ["501 5.5.4"]);
    assert.deepEqual(h.helos, []);
  });
});

describe("AUTH hooks", () => {
  test("a successful exchange can be refused: the reply is the handler's and the session stays unauthenticated", async () => {
    const h = new HookedHandler();
    const s = await ready({ implicitTls: TLS_INFO, startTlsAvailable: false, requireAuth: true }, h);
    h.loginReply = reply(535, "5.7.8", "Authentication refused");
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["535 5.7.8"]);
    assert.equal(s.session.state.authUser, null);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["530 5.7.0"]);
    h.loginReply = undefined;
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["235 2.7.0"]);
    assert.equal(s.session.state.authUser, "alice");
    assert.deepEqual(h.logins, ["alice", "alice"]);
  });

  test("an AUTH failure answered later can still end the session with 421", async () => {
    const h = new HookedHandler();
    const s = await ready({ implicitTls: TLS_INFO, startTlsAvailable: false }, h);
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_BAD}\r\n`), ["535 5.7.8"]);
    h.disconnectLater = true;
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_BAD}\r\n`), ["535 5.7.8", "421 4.7.0"]);
    assert.ok(s.transport.closed);
  });
});

describe("reset and close", () => {
  test("reset once per ended transaction: RSET, EHLO, a stored message, a refused DATA; never without a transaction", async () => {
    const h = new HookedHandler();
    const s = await ready({}, h);
    await say(s, "RSET\r\n");
    assert.equal(h.resets, 0, "no transaction, nothing to reset");
    await say(s, "MAIL FROM:<a@b.test>\r\nRSET\r\n");
    assert.equal(h.resets, 1);
    await say(s, "MAIL FROM:<a@b.test>\r\n");
    await say(s, "EHLO again.test\r\n");
    assert.equal(h.resets, 2);
    assert.deepEqual(await say(s, ["MAIL FROM:<a@b.test>\r\n", "RCPT TO:<c@d.test>\r\n", "DATA\r\n"]), ["250 2.1.0", "250 2.1.5", "354"]);
    assert.deepEqual(await say(s, dataPayload("Subject: x\r\n\r\nhi\r\n")), ["250 2.0.0"]);
    assert.equal(h.resets, 3);
    h.openReply = reply(451, "4.3.0", "later");
    await say(s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    assert.equal(h.resets, 4);
  });

  test("close is told once, after the message in progress was aborted", async () => {
    const h = new HookedHandler();
    const s = await ready({}, h);
    await say(s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    await say(s, "Subject: half\r\n");
    await s.session.closed();
    await s.session.closed();
    assert.equal(h.closes, 1);
    assert.equal(h.messages[0].aborted, true);
  });
});
