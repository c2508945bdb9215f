import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as net from "node:net";
import pino from "pino";
import nodemailer from "nodemailer";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { queueCommand } from "../../src/cli/queue-commands.ts";
import { PassThrough } from "node:stream";
import { startDnsServer } from "../support/dns-server.ts";

/**
 * The whole inbound path in one process: SMTP in, spool, queue manager,
 * Maildir out, bounces back — what a user of `petrel serve` depends on.
 */

interface Running {
  mta: Mta;
  dir: string;
  mx: number;
  submission: number;
  configPath: string;
  maildir(address: string): Promise<string[]>;
  stop(): Promise<void>;
}

async function start(extra: Record<string, unknown> = {}, dir?: string): Promise<Running> {
  dir ??= await mkdtemp(join(tmpdir(), "petrel-mta-"));
  const raw = {
    hostname: "mx.example.test",
    dataDir: dir,
    domains: ["example.test"],
    listeners: [
      { address: "127.0.0.1", port: 0, role: "mx" },
      { address: "127.0.0.1", port: 0, role: "submission" },
    ],
    log: { level: "silent" },
    limits: { shutdownGrace: 2 },
    ...extra,
  };
  const config = parseConfig(raw, "test");
  const mta = await startMta(config, { log: pino({ level: "silent" }), errorSleep: 0, fsync: false });
  if (!(await mta.accounts.listUsers()).some((u) => u.address === "alice@example.test")) {
    await mta.accounts.addUser("alice@example.test", "alice-password");
    await mta.accounts.addUser("bob@example.test", "bob-password");
    await mta.accounts.addAlias("team@example.test", ["alice@example.test", "bob@example.test"]);
  }
  const port = (role: string) => mta.smtp.listeners.find((l) => l.role === role)!.port;
  const { writeFile } = await import("node:fs/promises");
  const configPath = join(dir, "petrel.yaml");
  await writeFile(configPath, JSON.stringify(raw));
  return {
    mta, dir, mx: port("mx"), submission: port("submission"), configPath,
    async maildir(address) {
      const [local, domain] = address.split("@");
      const newDir = join(dir!, "mail", domain, local, "new");
      const names = await readdir(newDir).catch(() => [] as string[]);
      return Promise.all(names.sort().map((n) => readFile(join(newDir, n), "utf8")));
    },
    async stop() {
      await mta.close();
    },
  };
}

/** A client that waits for each reply before the next command (no pipelining). */
async function smtp(port: number, lines: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let out = "";
    let pending = "";
    let next = 0;
    s.on("data", (d) => {
      out += d.toString();
      pending += d.toString();
      // A complete reply ends with a line "ddd <text>".
      if (!/(^|\n)\d{3} [^\n]*\r\n$/.test(pending)) return;
      pending = "";
      if (next < lines.length) s.write(lines[next++] + "\r\n");
    });
    s.on("end", () => resolve(out));
    s.on("error", reject);
  });
}

async function until<T>(what: () => Promise<T | undefined | false>, label: string): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const v = await what();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${label}`);
}

function io(input = "") {
  let out = "";
  let err = "";
  const stdin = new PassThrough();
  stdin.end(input);
  return {
    io: { stdin, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } },
    out: () => out,
    err: () => err,
  };
}

test("mx mail to a user lands in their Maildir with Return-Path, Delivered-To and Received", async () => {
  const r = await start();
  try {
    const transcript = await smtp(r.mx, [
      "EHLO client.test", "MAIL FROM:<sender@far.test>", "RCPT TO:<alice@example.test>", "DATA",
      "Subject: hello\r\nMessage-ID: <m1@far.test>\r\n\r\nbody line\r\n..leading dot\r\n.", "QUIT",
    ]);
    const id = /250 2\.0\.0 Ok: queued as (\S+)/.exec(transcript)?.[1];
    assert.ok(id, transcript);
    const [msg] = await until(async () => (await r.maildir("alice@example.test")).length === 1 && r.maildir("alice@example.test"), "delivery");
    assert.match(msg, /^Return-Path: <sender@far\.test>\nDelivered-To: alice@example\.test\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\n\tby mx\.example\.test \(Petrel\) with ESMTP id /);
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
    await r.mta.accounts.addUser("alice@example.test", "alice-password", { quota: 100 });
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
    await until(async () => r.mta.queue.get(id)?.item.recipients[0].status === "deferred", "deferred");

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
    assert.equal(r.mta.queue.get(id)?.item.held, true);
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
    assert.equal(r2.mta.queue.get(id)?.item.held, true);
    c = io();
    assert.equal(await queueCommand(["delete", id, "--yes", "--config", r2.configPath], c.io), 0);
    assert.equal(r2.mta.queue.get(id), null);
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
    const deferred = await until(async () => r.mta.queue.list().find((m) => m.recipients[0].status === "deferred"), "deferral");
    await r.stop();
    await assert.rejects(start({ ...extra, spool: { format: "files" } }, r.dir), /spool\.format is "files" but .* still holds 1 queued message\(s\) in the "journal" format/);
    r2 = await start(extra, r.dir);
    assert.equal(r2.mta.queue.get(deferred.id)?.item.recipients[0].address, "carol@far.test", "the queued message survived the restart");
  } finally {
    if (r2) await r2.stop();
    else await r.stop().catch(() => {});
    await rm(r.dir, { recursive: true, force: true });
  }
});
