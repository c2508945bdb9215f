/**
 * What lands in which Maildir, through a whole Petrel and the `petrel` CLI
 * (user add/remove, queue retry), as an operator meets it: sub-addresses
 * keep the address as received in X-Original-To; a user removed while mail
 * for them waits does not get it (5.1.1); a message larger than the whole
 * quota bounces at once (5.2.3); postmaster@ and abuse@ of every local
 * domain reach the `postmaster:` address.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { accountsCommand } from "../../src/cli/accounts-commands.ts";
import { queueCommand } from "../../src/cli/queue-commands.ts";
import { io, smtp, start, until, type Running } from "./fixtures/mta-helpers.ts";

/** Send `body` (CRLF lines, no final dot) from `from` to `to` over the mx listener; the transcript. */
function send(r: Running, from: string, to: string[], body: string): Promise<string> {
  return smtp(r.mx, ["EHLO client.test", `MAIL FROM:<${from}>`, ...to.map((t) => `RCPT TO:<${t}>`), "DATA", `${body}\r\n.`, "QUIT"]);
}

/** A message of about `bytes` octets. */
function bodyOf(subject: string, bytes: number): string {
  const line = "x".repeat(70);
  return `Subject: ${subject}\r\n\r\n` + Array.from({ length: Math.ceil(bytes / 72) }, () => line).join("\r\n");
}

type CliIo = ReturnType<typeof io>["io"];

async function cli(command: (args: string[], streams: CliIo) => Promise<number>, args: string[], input = ""): Promise<{ code: number; out: string; err: string }> {
  const c = io(input);
  const code = await command(args, c.io);
  return { code, out: c.out(), err: c.err() };
}

test("sub-addressing and aliases: X-Original-To keeps the address as received, Delivered-To names the mailbox", async () => {
  const r = await start();
  try {
    const t = await send(r, "s@far.test", ["alice+news@example.test", "team@example.test"], "Subject: tagged\r\n\r\nhi");
    assert.match(t, /250 2\.0\.0 Ok: queued as/);
    const [alice] = await until(async () => (await r.maildir("alice@example.test")).length === 1 && r.maildir("alice@example.test"), "alice");
    assert.match(alice, /^Return-Path: <s@far\.test>\nX-Original-To: alice\+news@example\.test\nDelivered-To: alice@example\.test\nReceived: /);
    const [bob] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "bob");
    assert.match(bob, /^Return-Path: <s@far\.test>\nX-Original-To: team@example\.test\nDelivered-To: bob@example\.test\nReceived: /);
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("a message larger than the user's whole quota bounces at once (5.2.3), it is not deferred for the queue lifetime", async () => {
  const r = await start();
  try {
    const added = await cli(accountsCommand, ["user", "add", "q@example.test", "--quota", "2KiB", "--config", r.configPath], "q-password-long-enough\n");
    assert.equal(added.code, 0, added.err);
    await until(async () => (await r.mta.accounts.getUser("q@example.test"))?.quota === 2048, "the server sees q");
    const t = await send(r, "bob@example.test", ["q@example.test"], bodyOf("seven kilobytes", 7000));
    const id = /queued as (\S+)/.exec(t)?.[1];
    assert.ok(id, t);
    // Bob's DSN arrives on the first attempt: no retry, no clock moved.
    const [dsn] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "the DSN");
    assert.match(dsn, /^Return-Path: <>\n/);
    assert.match(dsn, /Final-Recipient: rfc822; ?q@example\.test/);
    assert.match(dsn, /Action: failed/);
    assert.match(dsn, /Status: 5\.2\.3/);
    assert.match(dsn, /exceed its whole quota of 2048 bytes/);
    await until(async () => await r.mta.queue.get(id) === null, "the message leaves the queue");
    assert.deepEqual(await r.maildir("q@example.test"), []);
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("mail deferred for a user who is then removed bounces 5.1.1 on the next retry and never reaches the old Maildir", async () => {
  const r = await start();
  try {
    assert.equal((await cli(accountsCommand, ["user", "add", "q@example.test", "--quota", "2KiB", "--config", r.configPath], "q-password-long-enough\n")).code, 0);
    await until(async () => (await r.mta.accounts.getUser("q@example.test"))?.quota === 2048, "the server sees q");
    // The first message fits; the second would pass the quota: deferred 4.2.2.
    assert.match(await send(r, "bob@example.test", ["q@example.test"], bodyOf("first", 1200)), /250 2\.0\.0/);
    await until(async () => (await r.maildir("q@example.test")).length === 1, "first delivery");
    const t = await send(r, "bob@example.test", ["q@example.test"], bodyOf("second", 1200));
    const id = /queued as (\S+)/.exec(t)![1];
    await until(async () => (await r.mta.queue.get(id))?.item.recipients[0].status === "deferred", "deferral");
    assert.match((await r.mta.queue.get(id))!.item.recipients[0].lastError ?? "", /^4\.2\.2 mailbox full/);

    const removed = await cli(accountsCommand, ["user", "remove", "q@example.test", "--config", r.configPath]);
    assert.equal(removed.code, 0, removed.err);
    await until(async () => (await r.mta.accounts.getUser("q@example.test")) === null, "the server sees the removal");
    const retried = await cli(queueCommand, ["retry", "--all", "--config", r.configPath]);
    assert.equal(retried.code, 0, retried.err);
    assert.equal(retried.out, "1 message(s) scheduled for delivery now\n");

    await until(async () => await r.mta.queue.get(id) === null, "the message leaves the queue");
    const names = await readdir(join(r.dir, "mail", "example.test", "q", "new"));
    assert.equal(names.length, 1, "only the first message, delivered while q existed");
    assert.doesNotMatch((await r.maildir("q@example.test"))[0], /Subject: second/);
    const [dsn] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "the DSN");
    assert.match(dsn, /Final-Recipient: rfc822; ?q@example\.test/);
    assert.match(dsn, /Action: failed/);
    assert.match(dsn, /Status: 5\.1\.1/);
    assert.match(dsn, /Diagnostic-Code: smtp; ?550 5\.1\.1 <q@example\.test>: no such user here/);
    assert.match(dsn, /Subject: second/);
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("postmaster: receives postmaster@ and abuse@ of every local domain (and <Postmaster>); explicit users and aliases still win", async () => {
  const r = await start({ domains: ["example.test", "other.test"], postmaster: "alice@example.test" });
  try {
    await r.mta.accounts.addAlias("abuse@other.test", "bob@example.test");
    const t = await smtp(r.mx, [
      "EHLO client.test", "MAIL FROM:<s@far.test>",
      "RCPT TO:<postmaster@other.test>", "RCPT TO:<abuse@example.test>", "RCPT TO:<Postmaster>", "RCPT TO:<abuse@other.test>",
      "DATA", "Subject: to the postmaster\r\n\r\nhi\r\n.", "QUIT",
    ]);
    assert.equal(t.match(/^250 2\.1\.5 /gm)?.length, 4, t);
    assert.match(t, /250 2\.0\.0 Ok: queued as/);
    const [toAlice] = await until(async () => (await r.maildir("alice@example.test")).length === 1 && r.maildir("alice@example.test"), "alice gets it");
    // One copy for alice (the same mailbox reached three ways), X-Original-To the first address that led there.
    assert.match(toAlice, /^Return-Path: <s@far\.test>\nX-Original-To: postmaster@other\.test\nDelivered-To: alice@example\.test\n/);
    const [toBob] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "bob gets abuse@other.test");
    assert.match(toBob, /\nX-Original-To: abuse@other\.test\nDelivered-To: bob@example\.test\n/);
    await until(async () => (await r.mta.smtp.spool.list()).length === 0, "spool emptied");
    assert.deepEqual(await readdir(join(r.dir, "mail")).catch(() => []), ["example.test"], "no postmaster Maildir nobody reads");
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("start-up warns while postmaster@ of a local domain lands where nobody reads it, and not once it is routed", async () => {
  const logs: string[] = [];
  const log = pino({ level: "warn" }, { write: (line: string) => logs.push(line) });
  let r = await start({ domains: ["example.test", "other.test"] }, undefined, log);
  const dir = r.dir;
  try {
    await r.stop();
    const warned = logs.map((l) => JSON.parse(l) as { level: number; msg: string; domains?: string[] }).filter((l) => /postmaster/.test(l.msg));
    assert.equal(warned.length, 1, logs.join(""));
    assert.equal(warned[0].level, 40, "a warning");
    assert.match(warned[0].msg, /^postmaster is not set: mail to postmaster@ of these domains lands in a Maildir no user can log into/);
    assert.deepEqual(warned[0].domains, ["example.test", "other.test"]);

    // A user postmaster@example.test reads one domain's; the setting covers all.
    logs.length = 0;
    r = await start({ domains: ["example.test", "other.test"] }, dir, log);
    await r.mta.accounts.addUser("postmaster@example.test", "p");
    await r.stop();
    logs.length = 0;
    r = await start({ domains: ["example.test", "other.test"] }, dir, log);
    await r.stop();
    assert.deepEqual(logs.map((l) => (JSON.parse(l) as { domains?: string[] }).domains), [["other.test"]]);
    logs.length = 0;
    r = await start({ domains: ["example.test", "other.test"], postmaster: "alice@example.test" }, dir, log);
    assert.deepEqual(logs, []);
  } finally {
    await r.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
