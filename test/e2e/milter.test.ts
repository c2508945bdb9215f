/**
 * Milters end to end: a client talks SMTP to a whole Petrel configured with
 * `milters:`, and what the client is answered and what lands in the Maildir
 * (or the queue) is checked — with OpenDKIM signing submitted mail (verified
 * by dkimpy on the delivered bytes), Sendmail's libmilter taking the other
 * actions (quarantine, recipient changes, discard, refusals), and a filter
 * that is down (defaultAction).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import * as net from "node:net";
import nodemailer from "nodemailer";
import { queueCommand } from "../../src/cli/queue-commands.ts";
import { startOpenDkim, startScenarioMilter, type DkimKey, type RunningMilter } from "../support/milter-peers.ts";
import { dkimpyVerify } from "../mailauth/helpers.ts";
import { io, smtp, start, until, type Running } from "./fixtures/mta-helpers.ts";

let opendkim: RunningMilter & { key: DkimKey };
let scenario: RunningMilter;

before(async () => {
  [opendkim, scenario] = await Promise.all([startOpenDkim({ domain: "example.test" }), startScenarioMilter()]);
}, { timeout: 60_000 });

after(async () => {
  await Promise.all([opendkim?.stop(), scenario?.stop()]);
});

/** Petrel with `milters`, users alice, bob and dave, and the scenario filter's addresses as aliases. */
async function withPetrel(milters: unknown[], body: (r: Running) => Promise<void>, extra: Record<string, unknown> = {}): Promise<void> {
  const r = await start({ milters, ...extra });
  try {
    await r.mta.accounts.addUser("dave@example.test", "dave-password");
    for (const local of ["reject", "added", "quarantine", "discard", "slow"]) await r.mta.accounts.addAlias(`${local}@example.test`, ["alice@example.test"]);
    await r.mta.accounts.addAlias("edits@example.test", ["dave@example.test"]);
    await body(r);
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
}

const MESSAGE = [
  "From: Alice <alice@example.test>",
  "To: Bob <bob@example.test>",
  "Subject: Minutes of the meeting, folded by the",
  " client as long subjects are",
  "Date: Thu, 03 Dec 2026 10:00:00 +0000",
  "Message-ID: <minutes-1@example.test>",
  "X-Mailer:tight",
  "",
  "Dear Bob,",
  "",
  "the minutes are below.",
  "",
].join("\r\n");

test("OpenDKIM on the submission listener: the delivered message carries a DKIM-Signature dkimpy verifies", async () => {
  await withPetrel([{ name: "opendkim", address: opendkim.address, listeners: ["submission", "submissions"] }], async (r) => {
    const t = nodemailer.createTransport({
      host: "127.0.0.1", port: r.submission, requireTLS: true, tls: { rejectUnauthorized: false },
      auth: { user: "alice@example.test", pass: "alice-password" },
    });
    const info = await t.sendMail({ envelope: { from: "alice@example.test", to: ["bob@example.test"] }, raw: MESSAGE });
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);
    const [delivered] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "delivery");
    assert.match(delivered, /\nDKIM-Signature: v=1; a=rsa-sha256; c=simple\/simple; d=example\.test; s=sel;\n\t/);
    // The Maildir file has LF line ends (as Dovecot expects); a reader verifies the message in its wire form.
    const verdicts = await dkimpyVerify(Buffer.from(delivered.replace(/\n/g, "\r\n")), [opendkim.key]);
    assert.deepEqual(verdicts.map((v) => v.pass), [true], JSON.stringify(verdicts));

    // Received on the mx listener: not the filter's business (listeners), so not signed.
    const transcript = await smtp(r.mx, ["EHLO client.test", "MAIL FROM:<carol@far.test>", "RCPT TO:<bob@example.test>", "DATA", `${MESSAGE}.`, "QUIT"]);
    assert.match(transcript, /250 2\.0\.0 Ok: queued as/);
    const both = await until(async () => (await r.maildir("bob@example.test")).length === 2 && r.maildir("bob@example.test"), "second delivery");
    assert.equal(both.filter((m) => m.includes("DKIM-Signature:")).length, 1);
  });
});

test("libmilter: a recipient refused with the filter's text, the others delivered with the filter's header edits and recipient changes", async () => {
  await withPetrel([{ name: "scenario", address: scenario.address }], async (r) => {
    const transcript = await smtp(r.mx, [
      "EHLO client.test", "MAIL FROM:<carol@far.test>", "RCPT TO:<reject@example.test>", "RCPT TO:<edits@example.test>", "RCPT TO:<bob@example.test>",
      "DATA", "From: carol@far.test\r\nSubject: original\r\nX-Remove: gone\r\n\r\nHello.\r\n.", "QUIT",
    ]);
    assert.match(transcript, /\r\n550 5\.1\.1 <reject@example\.test>: refused by the scenario filter\r\n/);
    assert.match(transcript, /250 2\.0\.0 Ok: queued as/);
    // The filter deleted edits@ (dave) and added added@ (alice); bob stays.
    const [bob] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "delivery to bob");
    await until(async () => (await r.maildir("alice@example.test")).length === 1, "delivery to the added recipient");
    await until(async () => (await r.mta.smtp.spool.list()).length === 0, "spool emptied");
    assert.deepEqual(await r.maildir("dave@example.test"), [], "the deleted recipient gets nothing");
    assert.match(bob, /\nX-Top: inserted at the top\n/);
    assert.match(bob, /\nSubject: changed subject\n/);
    assert.doesNotMatch(bob, /\nX-Remove:/);
    assert.match(bob, /\nX-Folded: first line\n\tsecond line\n/);
    // The filter saw the stored header section, Petrel's Received: field first.
    assert.ok(bob.includes("\nX-Seen-Headers: [('Received', 'from client.test ([127.0.0.1])\\n\\tby mx.example.test (Petrel)"), bob);
    assert.match(bob, /\nX-Seen-Rcpt: \{rcpt_addr\}=bob@example\.test\n/);
  });
});

test("libmilter: quarantine puts the message on hold in the queue; discard answers 250 and stores nothing", async () => {
  await withPetrel([{ name: "scenario", address: scenario.address }], async (r) => {
    const held = await smtp(r.mx, ["EHLO c.test", "MAIL FROM:<carol@far.test>", "RCPT TO:<quarantine@example.test>", "DATA", "Subject: q\r\n\r\nx\r\n.", "QUIT"]);
    const id = /250 2\.0\.0 Ok: queued as (\S+)/.exec(held)?.[1];
    assert.ok(id, held);
    const c = io();
    assert.equal(await queueCommand(["list", "--config", r.configPath], c.io), 0);
    assert.match(c.out(), new RegExp(`${id}.*held`, "s"));

    const discarded = await smtp(r.mx, ["EHLO c.test", "MAIL FROM:<carol@far.test>", "RCPT TO:<discard@example.test>", "DATA", "Subject: d\r\n\r\nx\r\n.", "QUIT"]);
    assert.match(discarded, /250 2\.0\.0 Ok: queued as/);
    assert.equal((await r.mta.smtp.spool.list()).length, 1, "only the held message is in the spool");
  });
});

test("a filter that is down: tempfail defers the client (nothing is lost), accept delivers without it", async () => {
  const dead = net.createServer();
  await new Promise<void>((res) => dead.listen(0, "127.0.0.1", res));
  const port = (dead.address() as net.AddressInfo).port;
  await new Promise<void>((res) => dead.close(() => res()));
  await withPetrel([{ name: "down", address: `inet:127.0.0.1:${port}`, connectTimeout: 1 }], async (r) => {
    // The filter is asked from the connection on: without it, the client is told to come back later.
    const t = await smtp(r.mx, ["EHLO c.test", "MAIL FROM:<carol@far.test>", "RCPT TO:<bob@example.test>", "DATA", "Subject: x\r\n\r\nx\r\n.", "QUIT"]);
    assert.equal(t, "421 4.7.1 Service unavailable - try again later\r\n");
    assert.deepEqual(await r.mta.smtp.spool.list(), []);
  });
  await withPetrel([{ name: "down", address: `inet:127.0.0.1:${port}`, defaultAction: "accept" }], async (r) => {
    const t = await smtp(r.mx, ["EHLO c.test", "MAIL FROM:<carol@far.test>", "RCPT TO:<bob@example.test>", "DATA", "Subject: x\r\n\r\nx\r\n.", "QUIT"]);
    assert.match(t, /250 2\.0\.0 Ok: queued as/);
    await until(async () => (await r.maildir("bob@example.test")).length === 1, "delivery without the filter");
  });
});

test("a filter slower than the pipeline allows a stage (policy.timeout) meets its defaultAction, not the pipeline's 451 4.3.0", async () => {
  // The scenario filter answers slow@'s end of message after 5 s; the pipeline gives a stage 2 s.
  const lines = ["EHLO c.test", "MAIL FROM:<carol@far.test>", "RCPT TO:<slow@example.test>", "DATA", "Subject: x\r\n\r\nx\r\n.", "QUIT"];
  await withPetrel([{ name: "scenario", address: scenario.address }], async (r) => {
    assert.match(await smtp(r.mx, lines), /\r\n451 4\.7\.1 Service unavailable - try again later\r\n221 /);
  }, { policy: { timeout: "2s" } });
  await withPetrel([{ name: "scenario", address: scenario.address, defaultAction: "accept" }], async (r) => {
    assert.match(await smtp(r.mx, lines), /\r\n250 2\.0\.0 Ok: queued as /);
    await until(async () => (await r.maildir("alice@example.test")).length === 1, "delivered without the filter");
  }, { policy: { timeout: "2s" } });
});
