/**
 * The whole inbound path with real peers on both ends: Python's smtplib
 * submits to `petrel` over SMTP, the queue delivers (Maildir, or LMTP into
 * Dovecot), and Dovecot's IMAP server reads the message back byte for byte.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname } from "node:path";
import { promisify } from "node:util";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { imapFetchAll, startDovecot, type Dovecot } from "./dovecot.ts";
import { requirePeer } from "../support/peers.ts";

const run = promisify(execFile);
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

const body =
  "From: Zoë <zoe@example.org>\r\n" +
  "To: alice@example.com\r\n" +
  "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n" +
  "Message-ID: <whole-path@example.org>\r\n" +
  "MIME-Version: 1.0\r\n" +
  "Content-Type: text/plain; charset=utf-8\r\n" +
  "Content-Transfer-Encoding: 8bit\r\n" +
  "\r\n" +
  "Grüße — 日本語\r\n" +
  ".a dot line\r\n" +
  "long: " + "x".repeat(3000) + "\r\n";

async function mta(lmtp: boolean): Promise<Mta> {
  const config = parseConfig({
    admin: { enabled: false },
    hostname: "mx.petrel.test",
    workers: 1,
    // <dataDir>/mail/<domain>/<user> is exactly Dovecot's maildir:<mailRoot>/%d/%n.
    dataDir: dirname(dovecot.mailRoot),
    domains: ["example.com"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    transport: lmtp ? [{ domains: ["example.com"], type: "lmtp", host: "127.0.0.1", port: dovecot.lmtpPort }] : [],
    // What Petrel (root here) delivers belongs to Dovecot's mail user, as vmail in production.
    delivery: { owner: { user: dovecot.mailOwner.uid, group: dovecot.mailOwner.gid } },
    limits: { shutdownGrace: 2 },
    log: { level: "silent" },
  }, "test");
  const m = await startMta(config, { log: pino({ level: "silent" }), errorSleep: 0, controlSocket: false });
  for (const u of ["alice@example.com", "bob@example.com"]) {
    if (!(await m.accounts.getUser(u))) await m.accounts.addUser(u, "unused-here");
  }
  return m;
}

/** Python's smtplib sends `body` (as bytes, 8BITMIME) and prints the reply to DATA. */
async function smtplibSend(port: number, to: string): Promise<string> {
  const script = [
    "import smtplib, sys",
    `s = smtplib.SMTP('127.0.0.1', ${port})`,
    "s.ehlo('client.example.org')",
    "msg = sys.stdin.buffer.read()",
    `s.mail('zoe@example.org', ['BODY=8BITMIME'])`,
    `s.rcpt('${to}')`,
    "code, text = s.data(msg)",
    "print(code, text.decode())",
    "s.quit()",
  ].join("\n");
  const child = run(requirePeer("python3", "python3"), ["-c", script], { timeout: 20_000 });
  child.child.stdin!.end(Buffer.from(body, "utf8"));
  return (await child).stdout.trim();
}

test("smtplib → Petrel (mx) → Maildir → Dovecot IMAP: the message comes back whole, with Petrel's trace fields on top", async () => {
  const m = await mta(false);
  try {
    const port = m.smtp.listeners[0].port;
    const reply = await smtplibSend(port, "alice@example.com");
    assert.match(reply, /^250 2\.0\.0 Ok: queued as \S+$/);
    await m.queue.idle();
    const got = await imapFetchAll(dovecot.imapPort, "alice@example.com", "alice-secret");
    assert.equal(got.length, 1, await dovecot.log());
    const text = got[0].body.toString("utf8");
    const trace = /^Return-Path: <zoe@example\.org>\r\nX-Original-To: alice@example\.com\r\nDelivered-To: alice@example\.com\r\nReceived: from client\.example\.org \(\[127\.0\.0\.1\]\)\r\n\tby mx\.petrel\.test \(Petrel\) with ESMTP id \S+\r\n\tfor <alice@example\.com>; [^\r]+\r\n/.exec(text);
    assert.ok(trace, text.slice(0, 300));
    assert.equal(text.slice(trace[0].length), body, "the rest is byte-identical");
  } finally {
    await m.close();
  }
});

test("smtplib → Petrel (mx) → LMTP → Dovecot → IMAP", async () => {
  const m = await mta(true);
  try {
    const reply = await smtplibSend(m.smtp.listeners[0].port, "bob@example.com");
    assert.match(reply, /^250 2\.0\.0 Ok: queued as \S+$/);
    await m.queue.idle();
    assert.deepEqual(await m.queue.list(), [], "delivered and gone from the queue");
    const got = await imapFetchAll(dovecot.imapPort, "bob@example.com", "bob-secret");
    assert.equal(got.length, 1, await dovecot.log());
    const text = got[0].body.toString("utf8");
    assert.ok(text.endsWith(body), "the message after the trace fields is byte-identical");
    assert.match(text, /Received: from client\.example\.org \(\[127\.0\.0\.1\]\)\r\n\tby mx\.petrel\.test \(Petrel\)/);
  } finally {
    await m.close();
  }
});
