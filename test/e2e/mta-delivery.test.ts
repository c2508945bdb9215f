import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as net from "node:net";
import nodemailer from "nodemailer";
import { queueCommand } from "../../src/cli/queue-commands.ts";
import { startDnsServer } from "../support/dns-server.ts";
import { io, smtp, start, until, type Running } from "./fixtures/mta-helpers.ts";

/**
 * The whole inbound path in one process: SMTP in, spool, queue manager,
 * Maildir out, bounces back — what a user of `petrel serve` depends on.
 */

test("mx mail to a user lands in their Maildir with Return-Path, X-Original-To, Delivered-To and Received", async () => {
  const r = await start();
  try {
    const transcript = await smtp(r.mx, [
      "EHLO client.test", "MAIL FROM:<sender@far.test>", "RCPT TO:<alice@example.test>", "DATA",
      "Subject: hello\r\nMessage-ID: <m1@far.test>\r\n\r\nbody line\r\n..leading dot\r\n.", "QUIT",
    ]);
    const id = /250 2\.0\.0 Ok: queued as (\S+)/.exec(transcript)?.[1];
    assert.ok(id, transcript);
    const [msg] = await until(async () => (await r.maildir("alice@example.test")).length === 1 && r.maildir("alice@example.test"), "delivery");
    assert.match(msg, /^Return-Path: <sender@far\.test>\nX-Original-To: alice@example\.test\nDelivered-To: alice@example\.test\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\n\tby mx\.example\.test \(Petrel\) with ESMTP id /);
    assert.ok(msg.includes(`id ${id}`));
    assert.ok(msg.endsWith("Subject: hello\nMessage-ID: <m1@far.test>\n\nbody line\n.leading dot\n"), msg);
    await until(async () => (await r.mta.smtp.spool.list()).length === 0, "spool emptied");
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("unknown local users are refused at RCPT; aliases and sub-addresses deliver", async () => {
  const r = await start();
  try {
    const t = await smtp(r.mx, [
      "EHLO c", "MAIL FROM:<s@far.test>", "RCPT TO:<nobody@example.test>", "RCPT TO:<team@example.test>", "RCPT TO:<bob+news@example.test>", "DATA",
      "Subject: x\r\n\r\nhi\r\n.", "QUIT",
    ]);
    assert.match(t, /550 5\.1\.1 <nobody@example\.test>: Recipient address rejected/);
    assert.match(t, /250 2\.0\.0 Ok: queued as/);
    await until(async () => (await r.maildir("bob@example.test")).length === 1 && (await r.maildir("alice@example.test")).length === 1, "alias delivery");
    // bob reached twice (alias and sub-address) gets one copy.
    await until(async () => (await r.mta.smtp.spool.list()).length === 0, "spool emptied");
    assert.equal((await r.maildir("bob@example.test")).length, 1);
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("a permanent local failure bounces a DSN into the local sender's Maildir", async () => {
  const r = await start({ delivery: { quotaFull: "bounce" } });
  try {
    await r.mta.accounts.removeUser("alice@example.test");
    await r.mta.accounts.addUser("alice@example.test", "alice-password", { quota: 5000 });
    // Alice's mailbox is already full (what her IMAP client left there).
    await mkdir(join(r.dir, "mail", "example.test", "alice", "cur"), { recursive: true });
    await writeFile(join(r.dir, "mail", "example.test", "alice", "cur", "1.M1P1.mx,S=5000,W=5100:2,S"), "x");
    const t = nodemailer.createTransport({
      host: "127.0.0.1", port: r.submission, requireTLS: true, tls: { rejectUnauthorized: false },
      auth: { user: "bob@example.test", pass: "bob-password" },
    });
    await t.sendMail({ from: "bob@example.test", to: "alice@example.test", subject: "too big", text: "x".repeat(500) });
    const [dsn] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "bounce");
    assert.match(dsn, /^Return-Path: <>\n/);
    assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status;/);
    assert.match(dsn, /Final-Recipient: rfc822; ?alice@example\.test/);
    assert.match(dsn, /Action: failed/);
    assert.match(dsn, /Status: 5\.2\.2/);
    assert.equal((await r.maildir("alice@example.test")).length, 0);
    await until(async () => (await r.mta.smtp.spool.list()).length === 0, "spool emptied");
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("remote mail stays queued (deferred) across a restart, and the queue tools see and change it", async () => {
  // far.test's MX is a loopback port where nothing listens: connection refused, so deferred.
  const closed = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
  const dns = await startDnsServer({ "far.test": { MX: [[10, "mx.far.test"]] }, "mx.far.test": { A: ["127.0.0.1"] } });
  after(() => dns.close());
  const net_ = { dns: { servers: [dns.server] }, outbound: { port: closed } };
  const r = await start(net_);
  let r2: Running | null = null;
  try {
    const t = nodemailer.createTransport({
      host: "127.0.0.1", port: r.submission, requireTLS: true, tls: { rejectUnauthorized: false },
      auth: { user: "alice@example.test", pass: "alice-password" },
    });
    const info = await t.sendMail({ from: "alice@example.test", to: "carol@far.test", subject: "out", text: "bye" });
    const id = /queued as (\S+)/.exec(info.response)![1];
    await until(async () => (await r.mta.queue.get(id))?.item.recipients[0].status === "deferred", "deferred");

    // Through the running server's control socket.
    let c = io();
    assert.equal(await queueCommand(["list", "--config", r.configPath], c.io), 0);
    assert.match(c.out(), new RegExp(`${id}.*\\n  from <alice@example.test>\\n  to   <carol@far.test>  deferred, 1 attempt`));
    assert.match(c.out(), /last error: 4\.4\.1 connect to mx\.far\.test\[127\.0\.0\.1\]: ECONNREFUSED/);
    c = io();
    assert.equal(await queueCommand(["summary", "--config", r.configPath, "--json"], c.io), 0);
    const summary = JSON.parse(c.out()) as { ageBuckets: { minMinutes: number; maxMinutes: number | null }[]; rows: { domain: string; total: number; buckets: number[] }[] };
    assert.deepEqual(summary.rows.map((x) => [x.domain, x.total]), [["TOTAL", 1], ["far.test", 1]]);
    assert.deepEqual(summary.ageBuckets[0], { minMinutes: 0, maxMinutes: 5 }, "a fresh message is in the first column, 0 to 5 minutes");
    assert.equal(summary.rows[1].buckets[0], 1);
    c = io();
    assert.equal(await queueCommand(["hold", id, "--config", r.configPath], c.io), 0);
    assert.equal((await r.mta.queue.get(id))?.item.held, true);
    c = io();
    assert.equal(await queueCommand(["delete", id, "--config", r.configPath], c.io), 2, "delete without a terminal asks for --yes");
    assert.match(c.err(), /--yes/);

    await r.stop();
    // Offline: no server; the tools open the queue on disk.
    c = io();
    assert.equal(await queueCommand(["show", id, "--config", r.configPath, "--json"], c.io), 0);
    const shown = JSON.parse(c.out()) as { item: { held: boolean; recipients: { status: string; attempts: number }[] } };
    assert.equal(shown.item.held, true);
    assert.equal(shown.item.recipients[0].status, "deferred");
    assert.equal(shown.item.recipients[0].attempts, 1);

    // Restart: the message is still there, still held.
    r2 = await start(net_, r.dir);
    assert.equal((await r2.mta.queue.get(id))?.item.held, true);
    c = io();
    assert.equal(await queueCommand(["delete", id, "--yes", "--config", r2.configPath], c.io), 0);
    assert.equal(await r2.mta.queue.get(id), null);
    assert.deepEqual(await r2.mta.smtp.spool.list(), []);
    c = io();
    assert.equal(await queueCommand(["show", "NOTANID", "--config", r2.configPath], c.io), 1);
    assert.match(c.err(), /not a queue id/);
  } finally {
    if (r2) await r2.stop();
    else await r.stop().catch(() => {});
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("spool.format journal: mail is accepted, delivered and survives a restart; switching format with mail queued is refused", async () => {
  const closed = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
  const dns = await startDnsServer({ "far.test": { MX: [[10, "mx.far.test"]] }, "mx.far.test": { A: ["127.0.0.1"] } });
  after(() => dns.close());
  const extra = { spool: { format: "journal" }, dns: { servers: [dns.server] }, outbound: { port: closed } };
  const r = await start(extra);
  let r2: Running | null = null;
  try {
    await r.mta.accounts.addAlias("fwd@example.test", "carol@far.test");
    const t = await smtp(r.mx, [
      "EHLO c", "MAIL FROM:<s@far.test>", "RCPT TO:<alice@example.test>", "DATA", "Subject: j\r\n\r\njournal\r\n.",
      // An alias that forwards outside: accepted on mx, then deferred (nothing listens at far.test).
      "MAIL FROM:<s@far.test>", "RCPT TO:<fwd@example.test>", "DATA", "Subject: out\r\n\r\nstays queued\r\n.", "QUIT",
    ]);
    assert.equal((t.match(/250 2\.0\.0 Ok: queued as/g) ?? []).length, 2, t);
    const [msg] = await until(async () => (await r.maildir("alice@example.test")).length === 1 && r.maildir("alice@example.test"), "journal delivery");
    assert.ok(msg.endsWith("Subject: j\n\njournal\n"));
    const deferred = await until(async () => (await r.mta.queue.list()).find((m) => m.recipients[0].status === "deferred"), "deferral");
    await r.stop();
    await assert.rejects(start({ ...extra, spool: { format: "files" } }, r.dir), /spool\.format is "files" but .* still holds 1 queued message\(s\) in the "journal" format/);
    r2 = await start(extra, r.dir);
    assert.equal((await r2.mta.queue.get(deferred.id))?.item.recipients[0].address, "carol@far.test", "the queued message survived the restart");
  } finally {
    if (r2) await r2.stop();
    else await r.stop().catch(() => {});
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("queue retry: a held message is left alone with a word on how to release it; retry --all counts only what it scheduled, online and offline", async () => {
  const r = await start();
  try {
    // carol's mailbox is full (4.2.2, retried later), so two messages for her wait in the queue.
    await r.mta.accounts.addUser("carol@example.test", "c", { quota: 2048 });
    await mkdir(join(r.dir, "mail", "example.test", "carol", "cur"), { recursive: true });
    await writeFile(join(r.dir, "mail", "example.test", "carol", "cur", "1.M1P1.mx,S=4096,W=4200:2,S"), "x");
    const ids: string[] = [];
    for (const n of [1, 2]) {
      const t = await smtp(r.mx, ["EHLO c", "MAIL FROM:<s@far.test>", "RCPT TO:<carol@example.test>", "DATA", `Subject: ${n}\r\n\r\nhi\r\n.`, "QUIT"]);
      ids.push(/queued as (\S+)/.exec(t)![1]);
    }
    const [held, other] = ids;
    await until(async () => (await Promise.all(ids.map((id) => r.mta.queue.get(id)))).every((m) => m?.item.recipients[0].status === "deferred"), "both deferred");
    let c = io();
    assert.equal(await queueCommand(["hold", held, "--config", r.configPath], c.io), 0);

    c = io();
    assert.equal(await queueCommand(["retry", held, "--config", r.configPath], c.io), 1);
    assert.equal(c.err(), `petrel queue retry: message ${held} is on hold, so nothing was scheduled; release it first: petrel queue release ${held}\n`);
    assert.equal(c.out(), "");
    await r.mta.queue.idle();
    assert.equal((await r.mta.queue.get(held))!.item.recipients[0].attempts, 1, "no attempt for the held message");

    c = io();
    assert.equal(await queueCommand(["retry", "--all", "--config", r.configPath], c.io), 0);
    assert.equal(c.out(), `1 message(s) scheduled for delivery now\n1 message(s) on hold left alone (release with petrel queue release ID): ${held}\n`);
    await r.mta.queue.idle();
    assert.equal((await r.mta.queue.get(held))!.item.recipients[0].attempts, 1);
    assert.equal((await r.mta.queue.get(other))!.item.recipients[0].attempts, 2, "the other one was tried again");

    await r.stop();
    // Offline (no server): the same answers from the queue on disk.
    c = io();
    assert.equal(await queueCommand(["retry", "--all", "--config", r.configPath], c.io), 0);
    assert.match(c.out(), /^1 message\(s\) scheduled for delivery now\n1 message\(s\) on hold left alone/);
    c = io();
    assert.equal(await queueCommand(["retry", held, "--config", r.configPath], c.io), 1);
    assert.match(c.err(), /is on hold, so nothing was scheduled; release it first: petrel queue release /);
    c = io();
    assert.equal(await queueCommand(["retry", "01AAAAAAAAAAAAAAAA", "--config", r.configPath], c.io), 1);
    assert.match(c.err(), /no message 01AAAAAAAAAAAAAAAA in the queue/);
  } finally {
    await r.stop().catch(() => {});
    await rm(r.dir, { recursive: true, force: true });
  }
});
