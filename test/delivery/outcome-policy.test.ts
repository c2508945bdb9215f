/**
 * The failure→outcome policy (delivery/outcome-policy.ts), value by value:
 * which reply or client failure defers, bounces, or lets the recipients go
 * to the next MX host, with which status and diagnostic.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SmtpClientError } from "../../src/client/smtp-connection.ts";
import { ReplyParser } from "../../src/smtp/reply-parser.ts";
import { endedReusedSession, messageOutcome, recipientOutcome, replyOutcome, trouble } from "../../src/delivery/outcome-policy.ts";

const peer = { where: "mx.b.test[192.0.2.7]", remoteMta: "mx.b.test" };
const parse = (wire: string) => new ReplyParser().push(Buffer.from(wire))[0];
const err = (kind: SmtpClientError["kind"], phase: string, more: ConstructorParameters<typeof SmtpClientError>[3] = {}) =>
  new SmtpClientError(kind, phase, `${kind} during ${phase}`, { host: "192.0.2.7", port: 25, ...more });

test("replies: 5xx failed, 4xx deferred, with the server's enhanced code (else X.0.0) and its reply as the diagnostic", () => {
  assert.deepEqual(replyOutcome(parse("550 5.1.1 <x@b.test>: no such user\r\n"), "mx.b.test"),
    { status: "failed", enhanced: "5.1.1", diagnostic: "550 5.1.1 <x@b.test>: no such user", remoteMta: "mx.b.test" });
  assert.deepEqual(replyOutcome(parse("452-4.2.2 mailbox\r\n452 4.2.2 full\r\n"), "mx.b.test"),
    { status: "deferred", enhanced: "4.2.2", diagnostic: "452 4.2.2 mailbox full", remoteMta: "mx.b.test" });
  assert.deepEqual(replyOutcome(parse("554 no thanks\r\n"), "m"), { status: "failed", enhanced: "5.0.0", diagnostic: "554 no thanks", remoteMta: "m" });
  assert.deepEqual(replyOutcome(parse("421 bye\r\n"), "m"), { status: "deferred", enhanced: "4.0.0", diagnostic: "421 bye", remoteMta: "m" });
  // A class that does not match the code's is not an enhanced code (RFC 3463 §2).
  assert.deepEqual(replyOutcome(parse("550 4.1.1 odd\r\n"), "m"), { status: "failed", enhanced: "5.0.0", diagnostic: "550 4.1.1 odd", remoteMta: "m" });
  const odd = replyOutcome(parse("354 go on\r\n"), "m");
  assert.ok(odd.status === "deferred" && odd.enhanced === "4.5.0" && /unexpected reply/.test(odd.diagnostic));
});

test("an accepted recipient follows the reply that decided the message; success says who reports it", () => {
  const ok = parse("250 2.0.0 Ok: queued as X1\r\n");
  for (const dsn of ["passed", "relayed", "final"] as const) {
    assert.deepEqual(messageOutcome(ok, dsn, peer), { status: "delivered", dsn, detail: "250 2.0.0 Ok: queued as X1", remoteMta: "mx.b.test" });
  }
  assert.equal(messageOutcome(parse("552 5.3.4 too big\r\n"), "relayed", peer).status, "failed");
  const none = messageOutcome(undefined, "relayed", peer);
  assert.ok(none.status === "deferred" && none.enhanced === "4.5.0");
  assert.equal(recipientOutcome({ address: "x", reply: parse("550 5.1.1 no\r\n"), final: ok }, "relayed", peer).status, "failed", "a refused RCPT wins");
  assert.equal(recipientOutcome({ address: "x", reply: parse("250 2.1.5 ok\r\n"), final: ok }, "relayed", peer).status, "delivered");
});

test("no connection: 4.4.1 with the errno, without a Remote-MTA (nobody answered); the next MX may be tried", () => {
  const t = trouble(err("connect", "connect", { code: "ECONNREFUSED" }), peer, "Q1");
  assert.deepEqual(t, { outcome: { status: "deferred", enhanced: "4.4.1", diagnostic: "connect to mx.b.test[192.0.2.7]: ECONNREFUSED" }, nextHost: true });
  assert.deepEqual(trouble(err("timeout", "connect", { timeoutMs: 30_000 }), peer, "Q1").outcome,
    { status: "deferred", enhanced: "4.4.1", diagnostic: "connect to mx.b.test[192.0.2.7]: timed out" });
});

test("a conversation lost or stalled: 4.4.2 saying while doing what; the next MX may be tried", () => {
  const lost = trouble(err("connect", "RCPT", { code: "ECONNRESET" }), peer, "Q1");
  assert.deepEqual(lost, { outcome: { status: "deferred", enhanced: "4.4.2", diagnostic: "lost connection with mx.b.test[192.0.2.7] while sending RCPT TO", remoteMta: "mx.b.test" }, nextHost: true });
  const slow = trouble(err("timeout", "greeting", { timeoutMs: 300_000 }), peer, "Q1");
  assert.ok(slow.outcome.status === "deferred" && slow.outcome.enhanced === "4.4.2" && slow.outcome.diagnostic === "conversation with mx.b.test[192.0.2.7] timed out while waiting for the greeting");
  assert.deepEqual(trouble(err("timeout", "DATA"), peer, "Q1").outcome,
    { status: "deferred", enhanced: "4.4.2", diagnostic: "conversation with mx.b.test[192.0.2.7] timed out while sending the message", remoteMta: "mx.b.test" });
});

test("the sender refused for good (5xx to MAIL) decides every recipient; for now (4xx) or a refused session lets the next MX try", () => {
  assert.deepEqual(trouble(err("reply", "MAIL", { reply: parse("553 5.7.1 not you\r\n") }), peer, "Q1"),
    { outcome: { status: "failed", enhanced: "5.7.1", diagnostic: "553 5.7.1 not you", remoteMta: "mx.b.test" }, nextHost: false });
  assert.deepEqual(trouble(err("reply", "MAIL", { reply: parse("451 4.3.0 try later\r\n") }), peer, "Q1").nextHost, true);
  const greeting = trouble(err("reply", "greeting", { reply: parse("554 5.7.1 go away\r\n") }), peer, "Q1");
  assert.ok(greeting.nextHost && greeting.outcome.status === "failed", "a 5xx greeting is this host's: the next MX may differ");
  const busy = trouble(err("reply", "RCPT", { reply: parse("421 4.3.2 shutting down\r\n") }), peer, "Q1");
  assert.ok(busy.nextHost && busy.outcome.status === "deferred" && busy.outcome.enhanced === "4.3.2");
});

test("AUTH, TLS and protocol trouble: 4.7.0, 4.7.5 (or the server's reply), 4.5.0 — all deferred, next MX allowed", () => {
  const auth = trouble(err("auth", "AUTH", { reply: parse("535 5.7.8 bad credentials\r\n") }), peer, "Q1");
  assert.deepEqual(auth, { outcome: { status: "deferred", enhanced: "4.7.0", diagnostic: "authentication to mx.b.test[192.0.2.7] failed: 535 5.7.8 bad credentials", remoteMta: "mx.b.test" }, nextHost: true });
  const tls = trouble(err("tls", "TLS", { code: "ERR_TLS_CERT_ALTNAME_INVALID" }), peer, "Q1");
  assert.ok(tls.nextHost && tls.outcome.status === "deferred" && tls.outcome.enhanced === "4.7.5");
  const refused = trouble(err("tls", "STARTTLS", { reply: parse("454 4.7.0 TLS not available\r\n") }), peer, "Q1");
  assert.ok(refused.outcome.status === "deferred" && refused.outcome.enhanced === "4.7.0");
  const proto = trouble(err("protocol", "EHLO"), peer, "Q1");
  assert.ok(proto.nextHost && proto.outcome.status === "deferred" && proto.outcome.enhanced === "4.5.0");
});

test("the queued message could not be read: 4.3.0 naming the queue id, never another host", () => {
  assert.deepEqual(trouble(new Error("EIO: read error"), peer, "Q7"), { outcome: { status: "deferred", enhanced: "4.3.0", diagnostic: "cannot read queued message Q7: EIO: read error" }, nextHost: false });
});

test("a reused session ended by the server before this transaction (421 or close at MAIL/RSET, or while idle) is no verdict on the message", () => {
  assert.equal(endedReusedSession(err("reply", "MAIL", { reply: parse("421 4.7.0 too many messages (MAILMAX)\r\n") })), true);
  assert.equal(endedReusedSession(err("reply", "idle", { reply: parse("421 4.4.2 timeout\r\n") })), true);
  assert.equal(endedReusedSession(err("connect", "MAIL", { code: "ECONNRESET" })), true);
  assert.equal(endedReusedSession(err("reply", "RCPT", { reply: parse("421 4.3.2 bye\r\n") })), false, "after MAIL was accepted it is about this message");
  assert.equal(endedReusedSession(err("reply", "MAIL", { reply: parse("451 4.3.0 later\r\n") })), false);
  assert.equal(endedReusedSession(err("timeout", "MAIL")), false);
  assert.equal(endedReusedSession(err("connect", "DATA").withDecided([{ address: "a@x", reply: parse("250 ok\r\n") }])), false);
  assert.equal(endedReusedSession(new Error("x")), false);
});
