/**
 * Interop with Python's smtplib (a real client over real TCP and TLS): reply
 * codes it sees, and what Petrel put in the spool.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ALICE, startPetrel, type TestPetrel } from "./petrel.ts";
import {
  b64, headerCount, headerValue, messageById, queuedId, runPy, spoolMessages, splitReceived, type PyResult, type PyStep,
} from "./interop-helpers.ts";

const MESSAGE_SIZE = 64 * 1024;
const DATE_RE = String.raw`\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000`;

let p: TestPetrel;

before(async () => {
  p = await startPetrel({ limits: { shutdownGrace: 2, messageSize: MESSAGE_SIZE } });
});
after(async () => {
  await p?.stop();
});

function ok(r: PyResult, what: string): any {
  assert.ok(r.ok, `${what} failed: ${JSON.stringify(r)}`);
  return r.value;
}

/** The stored message named by a sendmail step's 250 reply. */
async function stored(r: PyResult) {
  const v = ok(r, "sendmail");
  assert.deepEqual(v.refused, {});
  assert.equal(v.data_reply[0], 250);
  assert.match(v.data_reply[1], /^2\.0\.0 Ok: queued as \S+$/);
  const id = queuedId(v.data_reply[1]);
  return messageById(p, id);
}

const connect = (port: number, ssl = false): PyStep => ({ op: "connect", port, ssl, helo_name: "client.test" });
const ehlo: PyStep = { op: "ehlo", name: "client.test" };
const login: PyStep = { op: "login", user: ALICE.address, password: ALICE.password };
function sendmail(from: string, to: string[], msg: string | Buffer, extra: Record<string, unknown> = {}): PyStep {
  return { op: "sendmail", from, to, msg_b64: b64(msg), ...extra };
}

const plainMessage =
  "From: Carol <carol@sender.test>\r\n" +
  "To: Bob <bob@example.test>\r\n" +
  "Subject: plain interop\r\n" +
  "Message-ID: <plain-1@sender.test>\r\n" +
  "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
  "\r\n" +
  "Hello Bob.\r\n" +
  ".leading dot survives dot-stuffing\r\n" +
  "..two dots too\r\n";

describe("smtplib on the mx port", { timeout: 30_000 }, () => {
  test("plain send to a local user: 250 and a byte-identical body after Received", async () => {
    const r = await runPy([connect(p.mx), sendmail("carol@sender.test", ["bob@example.test"], plainMessage), { op: "quit" }]);
    ok(r[0], "connect");
    const m = await stored(r[1]);
    assert.deepEqual(ok(r[2], "quit"), [221, "2.0.0 mx.example.test closing connection"]);
    const { received, rest } = splitReceived(m.body);
    assert.match(received, new RegExp(
      String.raw`^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n` +
      String.raw`\tby mx\.example\.test \(Petrel\) with ESMTP id ${m.id}\r\n` +
      String.raw`\tfor <bob@example\.test>; ${DATE_RE}\r\n$`,
    ));
    assert.equal(rest.toString("utf8"), plainMessage);
    assert.equal(m.envelope.mailFrom, "carol@sender.test");
    assert.deepEqual(m.envelope.recipients, [{ address: "bob@example.test" }]);
    assert.equal(m.envelope.smtputf8, false);
    assert.equal(m.envelope.declaredSize, Buffer.byteLength(plainMessage)); // smtplib sends SIZE=
    assert.equal(m.envelope.client.helo, "client.test");
    assert.equal(m.envelope.client.protocol, "ESMTP");
    assert.equal(m.envelope.client.role, "mx");
    assert.equal(m.envelope.client.address, "127.0.0.1");
  });

  test("two recipients: no 'for' clause in Received", async () => {
    const r = await runPy([connect(p.mx), sendmail("carol@sender.test", ["bob@example.test", "dave@example.test"], plainMessage)]);
    const m = await stored(r[1]);
    const { received, rest } = splitReceived(m.body);
    assert.match(received, new RegExp(String.raw`\tby mx\.example\.test \(Petrel\) with ESMTP id ${m.id}; ${DATE_RE}\r\n$`));
    assert.doesNotMatch(received, /for </);
    assert.equal(rest.toString("utf8"), plainMessage);
    assert.deepEqual(m.envelope.recipients.map((x) => x.address), ["bob@example.test", "dave@example.test"]);
  });

  test("relay to a foreign domain is refused with 554 5.7.1 and nothing is stored", async () => {
    const before = (await spoolMessages(p)).length;
    const r = await runPy([connect(p.mx), sendmail("carol@sender.test", ["someone@foreign.test"], plainMessage), { op: "quit" }]);
    const e = r[1];
    assert.equal(e.ok, false);
    assert.ok(!e.ok);
    assert.equal(e.error, "SMTPRecipientsRefused");
    assert.deepEqual(e.recipients, { "someone@foreign.test": [554, "5.7.1 <someone@foreign.test>: Relay access denied"] });
    ok(r[2], "quit");
    assert.equal((await spoolMessages(p)).length, before);
  });

  test("unknown local user: 550 5.1.1 (refused in the dialogue, not bounced later)", async () => {
    const before = (await spoolMessages(p)).length;
    const r = await runPy([connect(p.mx), sendmail("carol@sender.test", ["nobody@localhost"], plainMessage)]);
    const e = r[1];
    assert.ok(!e.ok);
    assert.equal(e.error, "SMTPRecipientsRefused");
    assert.deepEqual(e.recipients, { "nobody@localhost": [550, "5.1.1 <nobody@localhost>: Recipient address rejected: no such user here"] });
    assert.equal((await spoolMessages(p)).length, before);
  });

  test("mx does not add Message-ID or Date", async () => {
    const bare = "From: carol@sender.test\r\nSubject: no ids\r\n\r\nbody\r\n";
    const r = await runPy([connect(p.mx), sendmail("carol@sender.test", ["bob@example.test"], bare)]);
    const m = await stored(r[1]);
    assert.equal(splitReceived(m.body).rest.toString("utf8"), bare);
  });

  test("SMTPUTF8: UTF-8 recipient and body, envelope records smtputf8", async () => {
    const msg = Buffer.from("From: jörg@sender.test\r\nTo: üser@example.test\r\nSubject: grüße\r\n\r\nÜnïcødé body ✓\r\n", "utf8");
    const r = await runPy([connect(p.mx), sendmail("jörg@sender.test", ["üser@example.test"], msg, { mail_options: ["SMTPUTF8"] })]);
    const m = await stored(r[1]);
    assert.equal(m.envelope.smtputf8, true);
    assert.equal(m.envelope.mailFrom, "jörg@sender.test");
    assert.deepEqual(m.envelope.recipients, [{ address: "üser@example.test" }]);
    const { received, rest } = splitReceived(m.body);
    assert.ok(rest.equals(msg));
    assert.match(received, new RegExp(String.raw`with UTF8SMTP id ${m.id}\r\n\tfor <üser@example\.test>;`));
  });

  test("DSN parameters are kept in the envelope (ENVID xtext-decoded)", async () => {
    const r = await runPy([connect(p.mx), sendmail("carol@sender.test", ["bob@example.test"], plainMessage, {
      mail_options: ["RET=HDRS", "ENVID=abc+2B1"],
      rcpt_options: ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@example.test"],
    })]);
    const m = await stored(r[1]);
    assert.equal(m.envelope.ret, "HDRS");
    assert.equal(m.envelope.envid, "abc+1");
    assert.deepEqual(m.envelope.recipients, [
      { address: "bob@example.test", notify: ["SUCCESS", "FAILURE"], orcpt: "rfc822;bob@example.test" },
    ]);
  });

  test("SIZE larger than the limit: 552 5.3.4 at MAIL, nothing stored", async () => {
    const before = (await spoolMessages(p)).length;
    const big = "Subject: big\r\n\r\n" + ("x".repeat(998) + "\r\n").repeat(Math.ceil(MESSAGE_SIZE / 1000) + 5);
    const r = await runPy([connect(p.mx), sendmail("carol@sender.test", ["bob@example.test"], big), { op: "quit" }]);
    const e = r[1];
    assert.ok(!e.ok);
    assert.equal(e.error, "SMTPSenderRefused");
    assert.equal(e.code, 552);
    assert.equal(e.message, `5.3.4 Error: message size exceeds fixed maximum message size (${MESSAGE_SIZE} octets)`);
    ok(r[2], "quit");
    assert.equal((await spoolMessages(p)).length, before);
  });
});

describe("smtplib on the submission port (STARTTLS)", { timeout: 30_000 }, () => {
  test("starttls + login + send to a foreign domain: 250, ESMTPSA, TLS noted", async () => {
    const msg = "From: alice@example.test\r\nTo: friend@foreign.test\r\nSubject: out\r\nMessage-ID: <sub-1@example.test>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nhi\r\n";
    const r = await runPy([
      connect(p.submission), ehlo, { op: "starttls" }, ehlo, login,
      sendmail(ALICE.address, ["friend@foreign.test"], msg), { op: "quit" },
    ]);
    assert.deepEqual(ok(r[2], "starttls"), [220, "2.0.0 Ready to start TLS"]);
    assert.deepEqual(ok(r[4], "login"), [235, "2.7.0 Authentication successful"]);
    const m = await stored(r[5]);
    const { received, rest } = splitReceived(m.body);
    assert.match(received, new RegExp(
      String.raw`^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n` +
      String.raw`\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\r\n` +
      String.raw`\tby mx\.example\.test \(Petrel\) with ESMTPSA id ${m.id}\r\n` +
      String.raw`\tfor <friend@foreign\.test>; ${DATE_RE}\r\n$`,
    ));
    assert.equal(rest.toString("utf8"), msg);
    assert.equal(m.envelope.client.authUser, ALICE.address);
    assert.equal(m.envelope.client.role, "submission");
    assert.equal(m.envelope.client.protocol, "ESMTPSA");
    assert.match(m.envelope.client.tls?.version ?? "", /^TLSv1\.[23]$/);
  });

  test("explicit AUTH PLAIN and AUTH LOGIN both succeed", async () => {
    for (const mechanism of ["PLAIN", "LOGIN"]) {
      const r = await runPy([connect(p.submission), ehlo, { op: "starttls" }, ehlo, { ...login, mechanism }]);
      assert.deepEqual(ok(r[4], `AUTH ${mechanism}`), [235, "2.7.0 Authentication successful"]);
    }
  });

  test("before STARTTLS: AUTH is not advertised and AUTH PLAIN gives 538 5.7.11; MAIL gives 530", async () => {
    const r = await runPy([
      connect(p.submission), ehlo,
      { op: "docmd", cmd: "AUTH", args: "PLAIN " + b64(`\0${ALICE.address}\0${ALICE.password}`) },
      { op: "docmd", cmd: "MAIL", args: `FROM:<${ALICE.address}>` },
    ]);
    const features = ok(r[1], "ehlo").features as Record<string, string>;
    assert.equal(features.auth, undefined);
    assert.equal(features.starttls, "");
    assert.deepEqual(ok(r[2], "AUTH"), [538, "5.7.11 Encryption required for requested authentication mechanism; use STARTTLS first"]);
    assert.deepEqual(ok(r[3], "MAIL"), [530, "5.7.0 Authentication required: use STARTTLS, then AUTH"]);
  });

  test("after STARTTLS: AUTH advertised; MAIL before AUTH gives 530 5.7.0", async () => {
    const r = await runPy([
      connect(p.submission), ehlo, { op: "starttls" }, ehlo,
      { op: "docmd", cmd: "MAIL", args: `FROM:<${ALICE.address}>` },
    ]);
    const features = ok(r[3], "ehlo").features as Record<string, string>;
    assert.equal(features.auth?.trim(), "SCRAM-SHA-256 PLAIN LOGIN");
    assert.equal(features.starttls, undefined);
    assert.deepEqual(ok(r[4], "MAIL"), [530, "5.7.0 Authentication required"]);
  });

  test("wrong password: 535 5.7.8", async () => {
    const r = await runPy([
      connect(p.submission), ehlo, { op: "starttls" }, ehlo,
      { op: "login", user: ALICE.address, password: "wrong", mechanism: "PLAIN" },
    ]);
    const e = r[4];
    assert.ok(!e.ok);
    assert.equal(e.error, "SMTPAuthenticationError");
    assert.equal(e.code, 535);
    assert.equal(e.message, "5.7.8 Authentication credentials invalid");
  });

  test("sender not owned by the login: 553 5.7.1", async () => {
    const before = (await spoolMessages(p)).length;
    const r = await runPy([
      connect(p.submission), ehlo, { op: "starttls" }, ehlo, login,
      sendmail("mallory@example.test", ["bob@example.test"], plainMessage),
    ]);
    const e = r[5];
    assert.ok(!e.ok);
    assert.equal(e.error, "SMTPSenderRefused");
    assert.equal(e.code, 553);
    assert.equal(e.message, `5.7.1 <mallory@example.test>: Sender address rejected: not owned by user ${ALICE.address}`);
    assert.equal((await spoolMessages(p)).length, before);
  });

  test("submission adds Message-ID and Date when missing", async () => {
    const head = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: no ids\r\n";
    const body = "\r\nbody line\r\n";
    const r = await runPy([
      connect(p.submission), ehlo, { op: "starttls" }, ehlo, login,
      sendmail(ALICE.address, ["bob@example.test"], head + body),
    ]);
    const m = await stored(r[5]);
    const rest = splitReceived(m.body).rest.toString("utf8");
    assert.match(rest, new RegExp(
      "^" + escapeRe(head) + `Message-ID: <${m.id}@mx\\.example\\.test>\\r\\nDate: ${DATE_RE}\\r\\n` + escapeRe(body) + "$",
    ));
  });

  test("submission keeps the client's Message-ID and Date", async () => {
    const msg = "From: alice@example.test\r\nDate: Wed, 3 Jan 2024 12:00:00 +0100\r\nMessage-ID: <mine@client.test>\r\nSubject: ids\r\n\r\nbody\r\n";
    const r = await runPy([
      connect(p.submission), ehlo, { op: "starttls" }, ehlo, login,
      sendmail(ALICE.address, ["bob@example.test"], msg),
    ]);
    const m = await stored(r[5]);
    const rest = splitReceived(m.body).rest;
    assert.equal(rest.toString("utf8"), msg);
    assert.equal(headerCount(rest, "Message-ID"), 1);
    assert.equal(headerValue(rest, "Message-ID"), "<mine@client.test>");
  });
});

describe("smtplib on the submissions port (implicit TLS)", { timeout: 30_000 }, () => {
  test("SMTP_SSL + login + send: 250, TLS and ESMTPSA in Received", async () => {
    const msg = "From: alice@example.test\r\nSubject: 465\r\nMessage-ID: <465@example.test>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nover implicit TLS\r\n";
    const r = await runPy([connect(p.submissions, true), ehlo, login, sendmail(ALICE.address, ["bob@example.test"], msg), { op: "quit" }]);
    const features = ok(r[1], "ehlo").features as Record<string, string>;
    assert.equal(features.starttls, undefined);
    assert.equal(features.auth?.trim(), "SCRAM-SHA-256 PLAIN LOGIN");
    assert.deepEqual(ok(r[2], "login"), [235, "2.7.0 Authentication successful"]);
    const m = await stored(r[3]);
    const { received, rest } = splitReceived(m.body);
    assert.match(received, new RegExp(String.raw`\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby mx\.example\.test \(Petrel\) with ESMTPSA id ${m.id}\r\n`));
    assert.equal(rest.toString("utf8"), msg);
    assert.equal(m.envelope.client.role, "submissions");
  });
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\r/g, "\\r").replace(/\n/g, "\\n");
}
