/**
 * The command table: each flag's check on its own (pure), the order in
 * which they are checked, and each flag's effect on a real session.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { COMMANDS, refusal, type CommandFlags, type CommandView } from "../../src/smtp/command-table.ts";
import { serializeReply } from "../../src/smtp/reply.ts";
import { PLAIN_OK, TLS_INFO, authenticated, makeSession, parseReplies, ready, say, settle } from "./harness.ts";

const TX = "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n";

/** A session after EHLO over TLS, nothing else: every flag passes. */
const open: CommandView = {
  helo: "client.test", tls: true, authenticated: false, requireAuth: false, startTlsEnabled: true,
  authEnabled: true, chunkingEnabled: true, inTransaction: false, bdatStarted: false, recipients: 0,
};

function refused(flags: Omit<CommandFlags, "refusalIsError">, v: Partial<CommandView>, arg = "", verb = "VERB"): string | null {
  const r = refusal(verb, { refusalIsError: true, ...flags }, arg, { ...open, ...v });
  return r === null ? null : serializeReply(r).trimEnd();
}

describe("each flag alone", () => {
  test("notImplemented → 502 5.5.1", () => {
    assert.equal(refused({ notImplemented: true }, {}, "", "EXPN"), "502 5.5.1 Error: EXPN not implemented");
  });

  test("noArgument → 501 5.5.4 with the usage; blanks are no argument", () => {
    assert.equal(refused({ noArgument: "RSET" }, {}, "x"), "501 5.5.4 Syntax: RSET");
    assert.equal(refused({ noArgument: "RSET" }, {}, "  "), null);
  });

  test("extension STARTTLS → 503 once TLS is up, 502 where it cannot be offered", () => {
    assert.equal(refused({ extension: "STARTTLS" }, { tls: true }), "503 5.5.1 Error: TLS already active");
    assert.equal(refused({ extension: "STARTTLS" }, { tls: false, startTlsEnabled: false }), "502 5.5.1 Error: STARTTLS not implemented");
    assert.equal(refused({ extension: "STARTTLS" }, { tls: false }), null);
  });

  test("extension AUTH → 503 5.5.1 where AUTH is not enabled", () => {
    assert.equal(refused({ extension: "AUTH" }, { authEnabled: false }), "503 5.5.1 Error: authentication not enabled");
    assert.equal(refused({ extension: "AUTH" }, {}), null);
  });

  test("extension CHUNKING → 521 5.5.1 where CHUNKING is hidden", () => {
    assert.equal(refused({ extension: "CHUNKING" }, { chunkingEnabled: false }), "521 5.5.1 Error: command not implemented");
    assert.equal(refused({ extension: "CHUNKING" }, {}), null);
  });

  test("needsTls → 538 5.7.11", () => {
    assert.match(refused({ needsTls: true }, { tls: false })!, /^538 5\.7\.11 /);
    assert.equal(refused({ needsTls: true }, {}), null);
  });

  test("needsHelo → 503 5.5.1 send HELO/EHLO first", () => {
    assert.equal(refused({ needsHelo: true }, { helo: null }), "503 5.5.1 Error: send HELO/EHLO first");
    assert.equal(refused({ needsHelo: true }, {}), null);
  });

  test("beforeAuth → 503 5.5.1 once authenticated", () => {
    assert.equal(refused({ beforeAuth: true }, { authenticated: true }), "503 5.5.1 Error: already authenticated");
  });

  test("outsideTransaction → the flag's own 503 inside a transaction", () => {
    const flags = { outsideTransaction: COMMANDS.get("MAIL")!.flags.outsideTransaction };
    assert.equal(refused(flags, { inTransaction: true }), "503 5.5.1 Error: nested MAIL command");
    assert.equal(refused(flags, {}), null);
  });

  test("needsAuth → 530 only where the listener requires AUTH; the text says STARTTLS first in the clear", () => {
    assert.equal(refused({ needsAuth: true }, {}), null, "AUTH not required");
    assert.equal(refused({ needsAuth: true }, { requireAuth: true }), "530 5.7.0 Authentication required");
    assert.equal(refused({ needsAuth: true }, { requireAuth: true, tls: false }), "530 5.7.0 Authentication required: use STARTTLS, then AUTH");
    assert.equal(refused({ needsAuth: true }, { requireAuth: true, authenticated: true }), null);
  });

  test("needsMail, beforeBdat, needsRcpt → 503 5.5.1", () => {
    assert.equal(refused({ needsMail: true }, {}), "503 5.5.1 Error: need MAIL command");
    assert.equal(refused({ beforeBdat: true }, { bdatStarted: true }, "", "RCPT"), "503 5.5.1 Error: RCPT after BDAT");
    assert.equal(refused({ needsRcpt: true }, { inTransaction: true }), "503 5.5.1 Error: need RCPT command");
    assert.equal(refused({ needsRcpt: true }, { inTransaction: true, recipients: 1 }), null);
  });

  test("the first failing check wins, in the documented order", () => {
    const auth = COMMANDS.get("AUTH")!.flags;
    const all = { helo: null, tls: false, authEnabled: false, authenticated: true, inTransaction: true };
    const order = [
      [{}, "503 5.5.1 Error: authentication not enabled"],
      [{ authEnabled: true }, /^538 5\.7\.11 /],
      [{ authEnabled: true, tls: true }, "503 5.5.1 Error: send HELO/EHLO first"],
      [{ authEnabled: true, tls: true, helo: "c" }, "503 5.5.1 Error: already authenticated"],
      [{ authEnabled: true, tls: true, helo: "c", authenticated: false }, "503 5.5.1 Error: MAIL transaction in progress"],
    ] as const;
    for (const [fix, want] of order) {
      const got = refused(auth, { ...all, ...fix });
      if (typeof want === "string") assert.equal(got, want);
      else assert.match(got!, want);
    }
  });
});

describe("the table", () => {
  test("the verbs that end a pipelining group are EHLO, HELO and DATA (RFC 2920 §3.1)", () => {
    const ending = [...COMMANDS].filter(([, c]) => c.flags.endsGroup).map(([v]) => v).sort();
    assert.deepEqual(ending, ["DATA", "EHLO", "HELO"]);
  });

  test("MAIL and AUTH need EHLO/HELO first; every refusal counts as an error but VRFY's", () => {
    const helo = [...COMMANDS].filter(([, c]) => c.flags.needsHelo).map(([v]) => v).sort();
    assert.deepEqual(helo, ["AUTH", "MAIL"]);
    const uncounted = [...COMMANDS].filter(([, c]) => !c.flags.refusalIsError).map(([v]) => v);
    assert.deepEqual(uncounted, ["VRFY"]);
  });
});

describe("each flag's effect on a session", () => {
  test("needsHelo: MAIL and AUTH before EHLO → 503 5.5.1, and are not executed", async () => {
    const s = makeSession({ implicitTls: TLS_INFO, startTlsAvailable: false });
    s.session.start();
    await settle(s);
    assert.deepEqual(await say(s, "MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert.deepEqual(await say(s, `AUTH PLAIN ${PLAIN_OK}\r\n`), ["503 5.5.1"]);
    assert.equal(s.handler.mails.length, 0);
    assert.equal(s.session.state.authUser, null);
  });

  test("endsGroup: a group-ending command in the middle of a pipelined group is a violation; the rest is dropped", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, `${TX}DATA\r\nRSET\r\nNOOP\r\n`), ["250 2.1.0", "250 2.1.5", "554 5.5.0"]);
    assert.equal(s.handler.messages.length, 0, "DATA was not executed");
    assert.ok(s.handler.events.some((e) => e.name === "pipelining-violation"));
    assert.deepEqual(await say(s, "HELO again.test\r\nNOOP\r\n"), ["554 5.5.0"], "HELO ends a group too");
    assert.equal(s.session.state.helo, "client.test", "the HELO was not executed");
  });

  test("endsGroup: commands that do not end a group may be pipelined; a group-ending command last is fine", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, `RSET\r\nNOOP\r\n${TX}DATA\r\n`), ["250 2.0.0", "250 2.0.0", "250 2.1.0", "250 2.1.5", "354"]);
  });

  test("endsGroup: an authenticated client may pipeline past a group end", async () => {
    const s = await authenticated();
    assert.deepEqual(await say(s, "EHLO again.test\r\nNOOP\r\n").then((r) => r.length), 2);
  });

  test("endsGroup: a refused group-ending command is a refusal, not a violation", async () => {
    const s = await ready();
    assert.deepEqual(await say(s, "DATA\r\nNOOP\r\n"), ["503 5.5.1", "250 2.0.0"]);
  });

  test("refusalIsError: refusals count toward the hard limit, VRFY's does not", async () => {
    const s = await ready({ limits: { hardErrors: 2 } });
    assert.deepEqual(await say(s, "VRFY\r\nVRFY\r\nVRFY\r\n"), ["501 5.5.4", "501 5.5.4", "501 5.5.4"]);
    assert.equal(s.transport.closed, false);
    assert.deepEqual(await say(s, "RSET x\r\nRSET x\r\n"), ["501 5.5.4", "501 5.5.4", "421 4.7.0"]);
    assert.equal(s.transport.closed, true);
  });

  test("outsideTransaction: STARTTLS and AUTH inside a transaction → 503 5.5.1", async () => {
    const s = await ready();
    await say(s, TX);
    assert.deepEqual(await say(s, "STARTTLS\r\n"), ["503 5.5.1"]);
    assert.equal(s.transport.startTlsCalls, 0);
  });

  test("notSmtp: an HTTP request line → 554 5.5.0 and close", async () => {
    const s = makeSession();
    s.session.start();
    await settle(s);
    assert.deepEqual(await say(s, "POST / HTTP/1.1\r\nHost: x\r\n"), ["554 5.5.0"]);
    assert.equal(s.transport.closed, true);
    assert.deepEqual(parseReplies(s.transport.writtenAfterClose), []);
  });
});
