/**
 * Interop with a real Dovecot (2.3): mail delivered by Petrel's LocalAgent
 * (Maildir) and LmtpAgent (LMTP) reads back over IMAP byte for byte.
 * Fails, naming the package, when Dovecot is not installed (and needs root).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { LocalAgent } from "../../src/delivery/local-agent.ts";
import { LmtpAgent } from "../../src/delivery/lmtp-agent.ts";
import { deliverAll } from "../delivery/helpers.ts";
import type { DeliveryRequest } from "../../src/queue/ports.ts";
import type { Envelope } from "../../src/mail/envelope.ts";
import { imapFetchAll, startDovecot, type Dovecot } from "./dovecot.ts";

let dovecot: Dovecot;

before(async () => {
  dovecot = await startDovecot([
    { address: "alice@example.com", password: "alice-secret" },
    { address: "bob@example.com", password: "bob-secret" },
  ]);
});
after(async () => {
  await dovecot?.stop();
});

/** A message with what usually breaks: UTF-8, a 5000-octet line, dot lines, 8-bit Latin-1 bytes, an empty line at the end. */
const message = Buffer.concat([
  Buffer.from(
    "Received: from client.test ([127.0.0.1]) by petrel.test with ESMTP id TESTQID; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
      "From: Zoë <zoe@example.org>\r\n" +
      "To: alice@example.com\r\n" +
      "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and ünïcødé in a header\r\n" +
      "Message-ID: <interop@petrel.test>\r\n" +
      "MIME-Version: 1.0\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\n" +
      "Content-Transfer-Encoding: 8bit\r\n" +
      "\r\n" +
      "Grüße aus Köln — 日本語 — ✉\r\n" +
      ".a line that starts with a dot\r\n" +
      ".\r\n" +
      "..\r\n" +
      "long: " + "0123456789".repeat(500) + "\r\n",
    "utf8",
  ),
  Buffer.from([0x4c, 0x61, 0x74, 0x69, 0x6e, 0x31, 0x3a, 0x20, 0xe9, 0xe8, 0xff, 0xa0, 0x80, 0x0d, 0x0a]),
  Buffer.from("\r\nlast line\r\n"),
]);

function envelope(mailFrom: string, rcpts: string[], extra: Partial<Envelope> = {}): Envelope {
  return {
    ...extra,
    mailFrom,
    recipients: rcpts.map((address) => ({ address })),
    body: "8BITMIME",
    smtputf8: false,
    requireTls: false,
    client: { address: "127.0.0.1", port: 1, helo: "client.test", protocol: "ESMTP", role: "mx" },
    receivedAt: Date.now(),
  };
}

function request(mailFrom: string, recipients: string[], extra: Partial<Envelope> = {}): DeliveryRequest {
  return {
    queueId: "TESTQID",
    envelope: envelope(mailFrom, recipients, extra),
    recipients,
    body: () => {
      const parts: Buffer[] = [];
      for (let i = 0; i < message.length; i += 777) parts.push(message.subarray(i, i + 777));
      return Readable.from(parts);
    },
  };
}

test("LocalAgent → Maildir → Dovecot IMAP returns the message byte for byte, with Return-Path, X-Original-To and Delivered-To on top", async () => {
  const owner = { ...dovecot.mailOwner, shared: false };
  const agent = new LocalAgent({ maildirRoot: dovecot.mailRoot, hostname: "petrel.test", owner });
  const out = await deliverAll(agent, request("zoe@example.org", ["alice@example.com"]));
  assert.deepEqual(out, [out[0]]);
  assert.equal(out[0].status, "delivered", JSON.stringify(out[0]));

  const got = await imapFetchAll(dovecot.imapPort, "alice@example.com", "alice-secret");
  assert.equal(got.length, 1, await dovecot.log());
  const expected = Buffer.concat([Buffer.from("Return-Path: <zoe@example.org>\r\nX-Original-To: alice@example.com\r\nDelivered-To: alice@example.com\r\n"), message]);
  assert.ok(got[0].body.equals(expected), `IMAP BODY[] differs:\n${JSON.stringify(got[0].body.toString("latin1").slice(0, 400))}`);
  assert.equal(got[0].size, expected.length, "RFC822.SIZE (from the W= field) is right");
});

test("LmtpAgent → Dovecot LMTP: one recipient delivered, an unknown one failed with Dovecot's 550; IMAP returns the message intact", async () => {
  const agent = new LmtpAgent({ target: { host: "127.0.0.1", port: dovecot.lmtpPort }, lhloName: "petrel.test", timeouts: { greeting: 10_000 } });
  const out = await deliverAll(agent, request("zoe@example.org", ["bob@example.com", "nobody@example.com"]));
  assert.equal(out[0].status, "delivered", JSON.stringify(out[0]));
  const o = out[1];
  assert.ok(o.status === "failed", JSON.stringify(o));
  assert.equal(o.enhanced, "5.1.1");
  assert.match(o.diagnostic, /550 5\.1\.1 <nobody@example\.com> User doesn't exist/);
  assert.equal(o.remoteMta, `[127.0.0.1]:${dovecot.lmtpPort}`);

  const got = await imapFetchAll(dovecot.imapPort, "bob@example.com", "bob-secret");
  assert.equal(got.length, 1, await dovecot.log());
  // Dovecot's LMTP prepends its own trace fields: Return-Path, Delivered-To and a Received field.
  const text = got[0].body.toString("latin1");
  const prefix = /^Return-Path: <zoe@example\.org>\r\nDelivered-To: bob@example\.com\r\nReceived: from petrel\.test[^\r]*(?:\r\n[ \t][^\r]*)*\r\n/.exec(text);
  assert.ok(prefix, `unexpected trace fields: ${JSON.stringify(text.slice(0, 400))}`);
  assert.equal(got[0].size, got[0].body.length);
  assert.ok(got[0].body.subarray(prefix[0].length).equals(message), "the message after Dovecot's trace fields is byte-identical");
});

test("LocalAgent with a folder a check chose (Envelope.folder): Dovecot lists the Maildir++ folder and returns the message from it, not from INBOX", async () => {
  const owner = { ...dovecot.mailOwner, shared: false };
  const agent = new LocalAgent({ maildirRoot: dovecot.mailRoot, hostname: "petrel.test", owner });
  const out = await deliverAll(agent, request("zoe@example.org", ["bob@example.com"], { folder: "Junk" }));
  assert.equal(out[0].status, "delivered", JSON.stringify(out[0]));
  const inbox = await imapFetchAll(dovecot.imapPort, "bob@example.com", "bob-secret");
  const junk = await imapFetchAll(dovecot.imapPort, "bob@example.com", "bob-secret", "Junk");
  assert.equal(junk.length, 1, await dovecot.log());
  const top = "Return-Path: <zoe@example.org>\r\nX-Original-To: bob@example.com\r\nDelivered-To: bob@example.com\r\n";
  assert.ok(junk[0].body.equals(Buffer.concat([Buffer.from(top), message])), JSON.stringify(junk[0].body.toString("latin1").slice(0, 200)));
  assert.ok(inbox.every((m) => !m.body.equals(junk[0].body)), "not in INBOX");
});
