/**
 * Interop with a real Postfix (the Debian package), both directions, on
 * loopback: a private Postfix (test/e2e/postfix.ts) on 127.0.0.21 = mx.pf.test
 * with virtual Maildir mailboxes for pf.test and a transport map sending
 * petrel.test to Petrel; Petrel on 127.0.0.22 = mx.petrel.test; a loopback DNS
 * server on 127.0.0.23 that only Petrel asks (pf.test MX → mx.pf.test →
 * 127.0.0.21). Both sides do opportunistic STARTTLS with self-signed
 * certificates.
 *
 *   Petrel → Postfix: client → Petrel submission (STARTTLS, AUTH) → MX lookup
 *     → Postfix smtpd (STARTTLS) → virtual → user@pf.test's Maildir
 *   Postfix → Petrel: client → Postfix smtpd → smtp:[127.0.0.22]:port
 *     (STARTTLS) → Petrel mx → bob@petrel.test's Maildir; an unknown user is
 *     refused at RCPT (550 5.1.1) and Postfix bounces to the sender.
 *   SMTPUTF8 both ways with UTF-8 addresses.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { SmtpConnection } from "../../src/client/index.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { freePortOn, requirePostfix, startPostfix, type Postfix } from "./postfix.ts";

const PF_ADDRESS = "127.0.0.21";
const PETREL_ADDRESS = "127.0.0.22";
const DNS_ADDRESS = "127.0.0.23";
const PF_SIZE_LIMIT = 200_000;


let dns: TestDnsServer | undefined;
let pf: Postfix | undefined;
let petrel: Mta | undefined;
let petrelDir: string | undefined;
let submissionPort = 0;

before(async () => {
  requirePostfix();
  dns = await startDnsServer({
    "pf.test": { MX: [[10, "mx.pf.test"]] },
    "mx.pf.test": { A: [PF_ADDRESS] },
    "petrel.test": { MX: [[10, "mx.petrel.test"]] },
    "mx.petrel.test": { A: [PETREL_ADDRESS] },
  }, { address: DNS_ADDRESS });
  // Petrel's MX port first (nothing else uses 127.0.0.22), so Postfix's transport map can name it.
  const petrelMxPort = await freePortOn(PETREL_ADDRESS);
  pf = await startPostfix({
    address: PF_ADDRESS,
    hostname: "mx.pf.test",
    domains: ["pf.test"],
    mailboxes: ["user@pf.test", "carol@pf.test", "jürgen@pf.test"],
    relay: { domain: "petrel.test", host: PETREL_ADDRESS, port: petrelMxPort },
    // Small, so that Petrel's SIZE check against Postfix's EHLO can be tried cheaply.
    extraMainCf: { message_size_limit: String(PF_SIZE_LIMIT) },
  });
  petrelDir = await mkdtemp(join(tmpdir(), "petrel-pfinterop-"));
  const config = parseConfig({
    admin: { enabled: false },
    hostname: "mx.petrel.test",
    workers: 1,
    dataDir: petrelDir,
    domains: ["petrel.test"],
    listeners: [
      { address: PETREL_ADDRESS, port: petrelMxPort, role: "mx" },
      { address: PETREL_ADDRESS, port: 0, role: "submission" },
    ],
    dns: { servers: [dns.server] },
    outbound: { port: pf.smtpPort, connectionReuse: 0, sourceAddress: PETREL_ADDRESS },
    queue: { minBackoff: 1 },
    limits: { shutdownGrace: 2 },
    log: { level: "silent" },
  }, "test");
  petrel = await startMta(config, { log: pino({ level: "silent" }), errorSleep: 0, fsync: false, controlSocket: false });
  submissionPort = petrel.smtp.listeners.find((l) => l.role === "submission")!.port;
  await petrel.accounts.addUser("alice@petrel.test", "alice-password");
  await petrel.accounts.addUser("bob@petrel.test", "bob-password");
  await petrel.accounts.addUser("dörte@petrel.test", "doerte-password");
});

after(async () => {
  await petrel?.close();
  await pf?.stop();
  await dns?.close();
  if (petrelDir) await rm(petrelDir, { recursive: true, force: true });
});

async function until<T>(what: () => Promise<T | undefined | false>, label: string, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await what();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${label}${pf ? `\n--- Postfix log ---\n${await pf.log()}` : ""}`);
}

async function petrelMaildir(address: string): Promise<Buffer[]> {
  const at = address.lastIndexOf("@");
  const nd = join(petrelDir!, "mail", address.slice(at + 1), address.slice(0, at), "new");
  const names = (await readdir(nd).catch(() => [] as string[])).sort();
  return Promise.all(names.map((n) => readFile(join(nd, n))));
}

/** Waits until a mailbox holds `count` messages; returns them. */
function mailbox(read: () => Promise<Buffer[]>, count: number, label: string): Promise<Buffer[]> {
  return until(async () => {
    const m = await read();
    return m.length >= count && m;
  }, label);
}

/** A message with every header a server might otherwise add, LF line ends, 8-bit UTF-8 text, dot lines. */
function message(from: string, to: string, subject: string, id: string): string {
  return [
    `From: <${from}>`,
    `To: <${to}>`,
    `Subject: ${subject}`,
    "Date: Mon, 30 Nov 2026 10:00:00 +0000",
    `Message-ID: <${id}@interop.test>`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: 8bit",
    "",
    "Grüße über das Netz — ünïcödé.",
    ".a line that starts with a dot",
    "..and one with two",
    ".",
    "trailing spaces   ",
    "\ttab-indented",
    "",
  ].join("\n");
}

/** Submit `data` to Petrel's submission listener as alice (STARTTLS, AUTH); the queue id. */
async function submitToPetrel(from: string, to: string, data: string, smtputf8 = false): Promise<string> {
  const c = await SmtpConnection.connect({
    host: PETREL_ADDRESS, port: submissionPort, tls: "starttls", verifyCertificate: false, heloName: "client.petrel.test",
  });
  try {
    await c.auth("alice@petrel.test", "alice-password");
    const r = await c.send({
      mailFrom: from,
      mailParams: { body: "8BITMIME", ...(smtputf8 ? { smtputf8: true } : {}) },
      recipients: [{ address: to }],
      message: Buffer.from(data.replace(/\n/g, "\r\n"), "utf8"),
    });
    assert.equal(r.recipients[0].reply.code, 250, JSON.stringify(r));
    assert.equal(r.final?.code, 250, JSON.stringify(r));
    const id = /queued as (\S+)/.exec(r.final!.lines.join(" "))?.[1];
    assert.ok(id, JSON.stringify(r.final));
    return id;
  } finally {
    await c.quit().catch(() => c.close());
  }
}

/** The header block of a delivered message split off the original bytes that follow it. */
function splitTrace(delivered: string, original: string): string {
  assert.ok(delivered.endsWith(original), `the original bytes are intact at the end:\n${delivered}`);
  return delivered.slice(0, delivered.length - original.length);
}

test("Petrel → Postfix: submission with AUTH, MX lookup, STARTTLS to Postfix, Maildir at Postfix", async () => {
  const data = message("alice@petrel.test", "user@pf.test", "Petrel to Postfix", "p2pf");
  const id = await submitToPetrel("alice@petrel.test", "user@pf.test", data);

  const [delivered] = await mailbox(() => pf!.maildir("user@pf.test"), 1, "delivery at Postfix");
  const trace = splitTrace(delivered.toString("utf8"), data);
  // Postfix's Received: from Petrel (EHLO mx.petrel.test, 127.0.0.22) over TLS, ESMTPS; then Petrel's own.
  assert.match(trace, new RegExp(
    "^Return-Path: <alice@petrel\\.test>\n" +
    "X-Original-To: user@pf\\.test\n" +
    "Delivered-To: user@pf\\.test\n" +
    "Received: from mx\\.petrel\\.test \\(unknown \\[127\\.0\\.0\\.22\\]\\)\n" +
    "\t\\(using TLSv1\\.3 with cipher [^\n]+\n(\t [^\n]+\n)*" +
    "(\t\\(No client certificate requested\\)\n)?" +
    "\tby mx\\.pf\\.test \\(Postfix\\) with ESMTPS id [0-9A-F]+\n" +
    "\tfor <user@pf\\.test>; [^\n]+\n" +
    "Received: from client\\.petrel\\.test \\(\\[127\\.0\\.0\\.[0-9]+\\]\\)\n" +
    "\t\\(using TLSv1\\.3 with cipher [^)]+\\)\n" +
    `\tby mx\\.petrel\\.test \\(Petrel\\) with ESMTPSA id ${id}\n` +
    "\tfor <user@pf\\.test>; [^\n]+\n$",
  ), trace);

  await until(async () => (await petrel!.queue.list()).length === 0 && true, "Petrel's queue empty");
  const log = await pf!.log();
  assert.match(log, /smtpd\[\d+\]: connect from unknown\[127\.0\.0\.22\]/);
  assert.match(log, /Anonymous TLS connection established from unknown\[127\.0\.0\.22\]: TLSv1\.3/);
  assert.match(log, /to=<user@pf\.test>, relay=virtual, .*status=sent \(delivered to maildir\)/);
});

test("Petrel → Postfix refusals: an unknown user (550 5.1.1 at RCPT) and a message over Postfix's SIZE bounce to the sender", async () => {
  const before = (await petrelMaildir("alice@petrel.test")).length;
  await submitToPetrel("alice@petrel.test", "nobody@pf.test", message("alice@petrel.test", "nobody@pf.test", "Nobody at Postfix", "p2pf-unknown"));
  const dsns = await mailbox(() => petrelMaildir("alice@petrel.test"), before + 1, "Petrel's DSN for nobody@pf.test");
  const dsn = dsns[before].toString("utf8").replace(/\n[ \t]+/g, " ");
  assert.match(dsn, /\nFinal-Recipient: rfc822; ?nobody@pf\.test\n/);
  assert.match(dsn, /\nAction: failed\n/);
  assert.match(dsn, /\nStatus: 5\.1\.1\n/);
  assert.match(dsn, /\nRemote-MTA: dns; ?mx\.pf\.test/);
  assert.match(dsn, /\nDiagnostic-Code: smtp; ?550 5\.1\.1 <nobody@pf\.test>: Recipient address rejected: User unknown in virtual mailbox table\n/);
  assert.match(await pf!.log(), /reject: RCPT from unknown\[127\.0\.0\.22\]: 550 5\.1\.1 <nobody@pf\.test>: .*from=<alice@petrel\.test> to=<nobody@pf\.test> proto=ESMTP helo=<mx\.petrel\.test>/);

  // Over Postfix's SIZE: Petrel does not even try to send it (RFC 1870), 5.3.4.
  const big = message("alice@petrel.test", "user@pf.test", "Too big for Postfix", "p2pf-big") + "x".repeat(76).concat("\n").repeat(Math.ceil(PF_SIZE_LIMIT / 77) + 10);
  await submitToPetrel("alice@petrel.test", "user@pf.test", big);
  const dsns2 = await mailbox(() => petrelMaildir("alice@petrel.test"), before + 2, "Petrel's DSN for the big message");
  const dsn2 = dsns2[before + 1].toString("utf8").replace(/\n[ \t]+/g, " ");
  assert.match(dsn2, /\nFinal-Recipient: rfc822; ?user@pf\.test\n/);
  assert.match(dsn2, /\nStatus: 5\.3\.4\n/);
  assert.match(dsn2, new RegExp(`exceeds the size limit ${PF_SIZE_LIMIT} of `));
  await until(async () => (await petrel!.queue.list()).length === 0 && true, "Petrel's queue empty");
  assert.equal((await pf!.maildir("user@pf.test")).filter((m) => m.includes("Too big for Postfix")).length, 0);
});

test("Postfix → Petrel: transport map relay with STARTTLS into bob's Maildir; an unknown user is refused at RCPT and Postfix bounces", async () => {
  const data = message("carol@pf.test", "bob@petrel.test", "Postfix to Petrel", "pf2p");
  const sent = await pf!.submit({ from: "carol@pf.test", to: ["bob@petrel.test"], data });
  assert.match(sent.data ?? "", /^250 2\.0\.0 Ok: queued as [0-9A-F]+$/, JSON.stringify(sent.transcript));
  const pfId = /queued as (\S+)/.exec(sent.data!)![1];

  const [delivered] = await mailbox(() => petrelMaildir("bob@petrel.test"), 1, "delivery at Petrel");
  const trace = splitTrace(delivered.toString("utf8"), data);
  assert.match(trace, new RegExp(
    "^Return-Path: <carol@pf\\.test>\n" +
    "X-Original-To: bob@petrel\\.test\n" +
    "Delivered-To: bob@petrel\\.test\n" +
    "Received: from mx\\.pf\\.test \\(\\[127\\.0\\.0\\.21\\]\\)\n" +
    "\t\\(using TLSv1\\.3 with cipher [^)]+\\)\n" +
    "\tby mx\\.petrel\\.test \\(Petrel\\) with ESMTPS id \\S+\n" +
    "\tfor <bob@petrel\\.test>; [^\n]+\n" +
    "Received: from client\\.test \\(unknown \\[127\\.0\\.0\\.1\\]\\)\n" +
    `\tby mx\\.pf\\.test \\(Postfix\\) with ESMTP id ${pfId}\n` +
    "\tfor <bob@petrel\\.test>; [^\n]+\n$",
  ), trace);
  const log = await until(async () => {
    const l = await pf!.log();
    return new RegExp(`${pfId}: removed`).test(l) && l;
  }, "Postfix done with the message");
  assert.match(log, new RegExp(
    `${pfId}: to=<bob@petrel\\.test>, relay=127\\.0\\.0\\.22\\[127\\.0\\.0\\.22\\]:\\d+, .*dsn=2\\.0\\.0, status=sent \\(250 2\\.0\\.0 [^\n]*\\)`,
  ));
  assert.match(log, /Untrusted TLS connection established to 127\.0\.0\.22\[127\.0\.0\.22\]:\d+: TLSv1\.3/);

  // An unknown user at petrel.test: Postfix accepts (it does not know Petrel's users), Petrel
  // refuses at RCPT with 550 5.1.1, Postfix bounces to carol@pf.test.
  const unknown = await pf!.submit({
    from: "carol@pf.test", to: ["nobody@petrel.test"], data: message("carol@pf.test", "nobody@petrel.test", "Nobody home", "pf2p-unknown"),
  });
  assert.match(unknown.data ?? "", /^250 /, JSON.stringify(unknown.transcript));
  const unknownId = /queued as (\S+)/.exec(unknown.data!)![1];
  const [bounce] = await mailbox(() => pf!.maildir("carol@pf.test"), 1, "Postfix's bounce to carol");
  const b = bounce.toString("utf8").replace(/\n[ \t]+/g, " "); // unfolded
  assert.match(b, /^Return-Path: <>\n/);
  assert.match(b, /\nSubject: Undelivered Mail Returned to Sender\n/);
  assert.match(b, /\nReporting-MTA: dns; mx\.pf\.test\n/);
  assert.match(b, /\nFinal-Recipient: rfc822; nobody@petrel\.test\n/);
  assert.match(b, /\nAction: failed\n/);
  assert.match(b, /\nStatus: 5\.1\.1\n/);
  assert.match(b, /\nRemote-MTA: dns; 127\.0\.0\.22\n/);
  assert.match(b, /\nDiagnostic-Code: smtp; 550 5\.1\.1 <nobody@petrel\.test>: Recipient address rejected: no such user here\n/);
  assert.match(b, /\nSubject: Nobody home\n/, "the returned message is attached");
  const log2 = await pf!.log();
  assert.match(log2, new RegExp(
    `${unknownId}: to=<nobody@petrel\\.test>, relay=127\\.0\\.0\\.22\\[127\\.0\\.0\\.22\\]:\\d+, .*dsn=5\\.1\\.1, status=bounced ` +
    `\\(host 127\\.0\\.0\\.22\\[127\\.0\\.0\\.22\\] said: 550 5\\.1\\.1 <nobody@petrel\\.test>: [^\n]*\\(in reply to RCPT TO command\\)\\)`,
  ));
  assert.equal((await petrelMaildir("nobody@petrel.test")).length, 0);
  await until(async () => (await pf!.queue()).length === 0, "Postfix's queue empty");
  assert.equal((await petrel!.queue.list()).length, 0, "nothing queued at Petrel");
});

test("SMTPUTF8 both ways: UTF-8 addresses from Petrel to Postfix and from Postfix to Petrel", async () => {
  // Petrel → Postfix: to jürgen@pf.test, with SMTPUTF8.
  const out = message("alice@petrel.test", "jürgen@pf.test", "UTF-8 nach Postfix", "utf8-p2pf");
  const id = await submitToPetrel("alice@petrel.test", "jürgen@pf.test", out, true);
  const [atPostfix] = await mailbox(() => pf!.maildir("jürgen@pf.test"), 1, "delivery to jürgen at Postfix");
  const t1 = splitTrace(atPostfix.toString("utf8"), out);
  assert.match(t1, /^Return-Path: <alice@petrel\.test>\nX-Original-To: jürgen@pf\.test\nDelivered-To: jürgen@pf\.test\nReceived: from mx\.petrel\.test /);
  assert.match(t1, /\tby mx\.pf\.test \(Postfix\) with UTF8SMTPS id [0-9A-F]+\n\tfor <jürgen@pf\.test>;/);
  assert.ok(t1.includes(`(Petrel) with UTF8SMTPSA id ${id}\n`), t1);
  await until(async () => (await petrel!.queue.list()).length === 0 && true, "Petrel's queue empty");

  // Postfix → Petrel: from jürgen@pf.test to dörte@petrel.test, with SMTPUTF8.
  const back = message("jürgen@pf.test", "dörte@petrel.test", "UTF-8 nach Petrel", "utf8-pf2p");
  const sent = await pf!.submit({ from: "jürgen@pf.test", to: ["dörte@petrel.test"], data: back, smtputf8: true });
  assert.match(sent.data ?? "", /^250 /, JSON.stringify(sent.transcript));
  const [atPetrel] = await mailbox(() => petrelMaildir("dörte@petrel.test"), 1, "delivery to dörte at Petrel");
  const t2 = splitTrace(atPetrel.toString("utf8"), back);
  assert.match(t2, /^Return-Path: <jürgen@pf\.test>\nX-Original-To: dörte@petrel\.test\nDelivered-To: dörte@petrel\.test\nReceived: from mx\.pf\.test \(\[127\.0\.0\.21\]\)\n/);
  assert.match(t2, /\tby mx\.petrel\.test \(Petrel\) with UTF8SMTPS id \S+\n\tfor <dörte@petrel\.test>;/);
  assert.match(t2, /\tby mx\.pf\.test \(Postfix\) with UTF8SMTP id [0-9A-F]+\n/);
  await until(async () => (await pf!.queue()).length === 0, "Postfix's queue empty");
});
