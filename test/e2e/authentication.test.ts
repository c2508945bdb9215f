/**
 * Message authentication across real Petrel instances on loopback addresses — A (127.0.0.2,
 * a.test), B (127.0.0.3, b.test), C (127.0.0.4, c.test) — with a DNS server on loopback that
 * publishes their MX, SPF, DKIM and DMARC records, the DKIM keys made as `petrel dkim keygen`
 * makes them: A signs what alice submits, B verifies it and writes Authentication-Results;
 * forgeries sent straight to B (from 127.0.0.9) are refused or quarantined; B forwards through
 * an alias to C and seals it, so C accepts what DMARC alone would refuse; a DSN A composes is
 * signed.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { sendCommand } from "../../src/cli/send.ts";
import { generateDkimKey, listDkimKeys } from "../../src/mailauth/dkim-keys.ts";
import type { Check } from "../../src/policy/check.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../support/dns-server.ts";
import { portFreeOn } from "../support/ports.ts";
import { until } from "../support/until.ts";
import { SmtpClient } from "./fixtures/robust-helpers.ts";
import { dkimpyArcVerify, dkimpyVerify, txtStrings, type KeyRecord } from "../mailauth/helpers.ts";
import { bTag } from "../support/dkim-b-tag.ts";

type Name = "a" | "b" | "c";
const ADDRESS: Record<Name, string> = { a: "127.0.0.2", b: "127.0.0.3", c: "127.0.0.4" };
const FORGER = "127.0.0.9";

let dns: TestDnsServer;
let mxPort: number;
const dirs: string[] = [];
/** Key records, by instance: made once, published in the zone. */
const keyDirs = {} as Record<Name, string>;
let records: KeyRecord[] = [];

before(async () => {
  mxPort = await portFreeOn(Object.values(ADDRESS));
  const zone: Record<string, object> = {
    "q.test": { TXT: ["v=spf1 -all"] },
    "_dmarc.q.test": { TXT: ["v=DMARC1; p=quarantine"] },
  };
  for (const name of ["a", "b", "c"] as const) {
    const domain = `${name}.test`;
    const ip = ADDRESS[name];
    Object.assign(zone, {
      [domain]: { MX: [[10, `mx.${domain}`]], TXT: [`v=spf1 ip4:${ip} -all`] },
      // The HELO identity: what SPF checks for the null reverse-path of a DSN.
      [`mx.${domain}`]: { A: [ip], TXT: [`v=spf1 ip4:${ip} -all`] },
      [`_dmarc.${domain}`]: { TXT: [`v=DMARC1; p=reject; rua=mailto:dmarc-reports@${domain}`] },
    });
    // The keys, as `petrel dkim keygen` makes them, in a data directory of the instance's.
    const dir = await mkdtemp(join(tmpdir(), `petrel-auth-${name}-`));
    dirs.push(dir);
    keyDirs[name] = dir;
    await generateDkimKey(dir, domain, "rsa", "rsa");
    await generateDkimKey(dir, domain, "ed", "ed25519");
    for (const k of await listDkimKeys(dir, domain)) {
      const record = { name: `${k.selector}._domainkey.${domain}`, record: k.record };
      records.push(record);
      zone[record.name] = { TXT: [txtStrings(k.record)] };
    }
  }
  dns = await startDnsServer(zone as Zone);
});

after(async () => {
  await dns?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Instance {
  readonly mta: Mta;
  readonly submission: number;
  /** Messages in a Maildir folder ("" = the inbox), LF line ends as delivered. */
  maildir(address: string, folder?: string): Promise<string[]>;
  close(): Promise<void>;
}

async function instance(name: Name, options: { config?: Record<string, unknown>; sign?: boolean; checks?: Check[] } = {}): Promise<Instance> {
  const dir = options.sign === false ? await mkdtemp(join(tmpdir(), `petrel-auth-${name}-unsigned-`)) : keyDirs[name];
  if (options.sign === false) dirs.push(dir);
  const domain = `${name}.test`;
  const config = parseConfig({
    hostname: `mx.${domain}`,
    workers: 1,
    dataDir: dir,
    domains: [domain],
    listeners: [{ address: ADDRESS[name], port: mxPort, role: "mx" }, { address: ADDRESS[name], port: 0, role: "submission" }],
    dns: { servers: [dns.server] },
    outbound: { port: mxPort, connectionReuse: 0, sourceAddress: ADDRESS[name] },
    queue: { minBackoff: 1 },
    limits: { shutdownGrace: 2 },
    log: { level: "silent" },
    // Three instances at once: the admin API's fixed default port (8025) would be bound twice.
    admin: { enabled: false },
    // Every client here is on loopback, which Petrel does not check by default.
    authentication: { ignoreClients: [] },
    ...(options.sign === false ? {} : { dkim: { domains: { [domain]: { selectors: ["rsa", "ed"] } } } }),
    ...options.config,
  }, "test");
  const mta = await startMta(config, { log: pino({ level: "silent" }), errorSleep: 0, fsync: false, controlSocket: false, ...(options.checks ? { checks: options.checks } : {}) });
  const user = name === "a" ? "alice@a.test" : name === "b" ? "bob@b.test" : "carol@c.test";
  if (!(await mta.accounts.getUser(user))) await mta.accounts.addUser(user, `${name}-password-123`);
  return {
    mta,
    submission: mta.smtp.listeners.find((l) => l.role === "submission")!.port,
    async maildir(address, folder = "") {
      const [local, d] = address.split("@");
      const nd = join(dir, "mail", d, local, folder === "" ? "" : `.${folder}`, "new");
      const names = (await readdir(nd).catch(() => [] as string[])).sort();
      return Promise.all(names.map((n) => readFile(join(nd, n), "utf8")));
    },
    async close() {
      await mta.close();
      // The next test starts a fresh instance on this data directory: nothing of this one stays.
      await rm(join(dir, "mail"), { recursive: true, force: true });
    },
  };
}

/** `petrel send` in-process to an instance's submission port, the password from a file. */
async function submit(i: Instance, name: Name, from: string, to: string, subject: string, text: string): Promise<void> {
  const pwFile = join(dirs[0], `pw-${Math.random().toString(36).slice(2)}`);
  await writeFile(pwFile, `${name}-password-123\n`, { mode: 0o600 });
  let out = "";
  let err = "";
  const stdin = new PassThrough();
  stdin.end();
  const code = await sendCommand([
    "--server", `${ADDRESS[name]}:${i.submission}`, "--tls", "starttls", "--insecure", "--user", from, "--password-file", pwFile,
    "--from", from, "--to", to, "--subject", subject, "--text", text,
  ], { stdin, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } } as never);
  assert.equal(code, 0, err + out);
}

/** A message straight to an instance's mx from another address: the reply to the end of data. */
async function sendRaw(to: Name, from: string, rcpt: string, message: string, localAddress = FORGER): Promise<string> {
  const c = await SmtpClient.connect(mxPort, { host: ADDRESS[to], localAddress });
  try {
    assert.equal((await c.ehlo("forger.test")).code, 250);
    assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
    assert.equal((await c.cmd(`RCPT TO:<${rcpt}>`)).code, 250);
    assert.equal((await c.cmd("DATA")).code, 354);
    c.write(message.replace(/\r?\n/g, "\r\n") + "\r\n.\r\n");
    return (await c.read()).text;
  } finally {
    await c.cmd("QUIT").catch(() => undefined);
    c.close();
  }
}

const crlf = (s: string) => s.replace(/\r?\n/g, "\r\n");
/** The fields of a message's header section, unfolded. */
const fields = (m: string) => m.slice(0, m.indexOf("\n\n")).replace(/\n[ \t]+/g, " ").split("\n");

test("A signs alice's message (rsa and ed25519); B verifies it: the exact Authentication-Results with dkim=pass spf=pass dmarc=pass", async () => {
  const a = await instance("a");
  const b = await instance("b");
  try {
    await submit(a, "a", "alice@a.test", "bob@b.test", "Quarterly report", "Hello Bob,\nthe figures.\n");
    const [msg] = await until(async () => (await b.maildir("bob@b.test")).length === 1 && b.maildir("bob@b.test"), "delivery at B", { ms: 30_000 });
    const f = fields(msg);
    const signatures = f.filter((l) => l.startsWith("DKIM-Signature:"));
    assert.equal(signatures.length, 2);
    assert.match(signatures[0], /a=rsa-sha256; c=relaxed\/relaxed; d=a\.test;.* s=rsa;/);
    assert.match(signatures[1], /a=ed25519-sha256; c=relaxed\/relaxed; d=a\.test;.* s=ed;/);
    const ar = msg.slice(msg.indexOf("Authentication-Results:"), msg.indexOf("\nReceived-SPF:"));
    assert.equal(ar,
      "Authentication-Results: mx.b.test;\n" +
      "\tspf=pass (mx.b.test: domain of alice@a.test designates 127.0.0.2 as permitted sender) smtp.mailfrom=a.test;\n" +
      `\tdkim=pass header.d=a.test header.i=@a.test header.s=rsa header.a=rsa-sha256 header.b=${bTag(signatures[0])};\n` +
      `\tdkim=pass header.d=a.test header.i=@a.test header.s=ed header.a=ed25519-sha256 header.b=${bTag(signatures[1])};\n` +
      "\tarc=none smtp.remote-ip=127.0.0.2;\n" +
      "\tdmarc=pass (p=REJECT arc=none) policy.dmarc=reject header.from=a.test");
    assert.equal(f.filter((l) => l.startsWith("Authentication-Results:")).length, 1);
    // Order as delivered: B's fields on top of B's Received:, A's signatures on top of A's Received:.
    assert.deepEqual(f.map((l) => l.slice(0, l.indexOf(":"))).slice(0, 9), [
      "Return-Path", "X-Original-To", "Delivered-To", "Authentication-Results", "Received-SPF", "Received", "DKIM-Signature", "DKIM-Signature", "Received",
    ]);
    // The bytes delivered verify in dkimpy too.
    assert.deepEqual(await dkimpyVerify(crlf(msg), records), [{ pass: true }, { pass: true }]);
  } finally {
    await a.close();
    await b.close();
  }
});

test("straight to B: a forged From of a.test (p=reject) is refused 550 5.7.1; so is one of B's own domains without a DMARC record; a forged Authentication-Results is removed", async () => {
  const b = await instance("b", { config: { domains: ["b.test", "shop.test"] } });
  try {
    const forged = "From: Alice <alice@a.test>\nTo: bob@b.test\nSubject: Urgent: new bank details\nMessage-ID: <f1@a.test>\nDate: Fri, 02 Jan 2026 10:00:00 +0000\n\nPlease pay.\n";
    assert.equal(await sendRaw("b", "alice@a.test", "bob@b.test", forged),
      "550 5.7.1 Message rejected: the DMARC policy of a.test is reject, and this message passed neither SPF nor DKIM for a.test");
    // The envelope sender changes nothing: DMARC reads From.
    assert.equal(await sendRaw("b", "bounces@elsewhere.test", "bob@b.test", forged),
      "550 5.7.1 Message rejected: the DMARC policy of a.test is reject, and this message passed neither SPF nor DKIM for a.test");
    // shop.test is B's and publishes nothing: mail under its name must be authenticated.
    const ceo = forged.replace("alice@a.test", "ceo@shop.test");
    assert.equal(await sendRaw("b", "ceo@shop.test", "bob@b.test", ceo),
      "550 5.7.1 Message rejected: shop.test is a domain of this server; mail from it must be authenticated (SMTP AUTH) or pass SPF or DKIM for it");
    // Nothing was stored.
    assert.equal((await b.mta.queue.list()).length, 0);

    // An honest message that carries a field claiming B's authserv-id: accepted, the forged field gone.
    const honest = "Authentication-Results: mx.b.test; dmarc=pass header.from=a.test\nFrom: <news@elsewhere.test>\nTo: bob@b.test\nSubject: hi\n\nhello\n";
    assert.match(await sendRaw("b", "news@elsewhere.test", "bob@b.test", honest), /^250 2\.0\.0 Ok: queued as /);
    const [msg] = await until(async () => (await b.maildir("bob@b.test")).length === 1 && b.maildir("bob@b.test"), "delivery at B", { ms: 30_000 });
    const ars = fields(msg).filter((l) => l.startsWith("Authentication-Results:"));
    assert.deepEqual(ars, [
      "Authentication-Results: mx.b.test; spf=none (mx.b.test: elsewhere.test does not designate permitted sender hosts) smtp.mailfrom=elsewhere.test; dkim=none; arc=none smtp.remote-ip=127.0.0.9; dmarc=none header.from=elsewhere.test",
    ]);
  } finally {
    SmtpClient.closeAll();
    await b.close();
  }
});

test("p=quarantine: a failing message is accepted and delivered into bob's Junk folder (Maildir .Junk)", async () => {
  const b = await instance("b");
  try {
    const msg = "From: <promo@q.test>\nTo: bob@b.test\nSubject: You won\n\nClaim it.\n";
    assert.match(await sendRaw("b", "promo@q.test", "bob@b.test", msg), /^250 2\.0\.0 Ok: queued as /);
    const [junk] = await until(async () => (await b.maildir("bob@b.test", "Junk")).length === 1 && b.maildir("bob@b.test", "Junk"), "delivery into Junk", { ms: 30_000 });
    assert.match(junk, /\tdmarc=fail \(p=QUARANTINE arc=none\) policy\.dmarc=quarantine header\.from=q\.test\n/);
    assert.deepEqual(await b.maildir("bob@b.test"), [], "not in the inbox");
  } finally {
    SmtpClient.closeAll();
    await b.close();
  }
});

/** B's list behaviour: it tags the Subject of what it relays, which breaks the author's DKIM signature. */
const subjectTag: Check = {
  name: "subject-tag",
  open: () => ({
    message: () => ({
      endOfData: (header) => {
        const n = header.filter((f) => f.name.toLowerCase() === "subject").length;
        const subject = header.filter((f) => f.name.toLowerCase() === "subject").at(-1)?.value.trim() ?? "";
        return n === 0 ? undefined : { headerEdits: [{ op: "change" as const, name: "Subject", index: n, value: `[team] ${subject}` }] };
      },
    }),
  }),
};

test("a forward through an alias on B to C: B seals it (ARC), and C, trusting B, accepts what fails DMARC there because B's change broke DKIM", async () => {
  const a = await instance("a");
  const b = await instance("b", { checks: [subjectTag] });
  const c = await instance("c", { config: { authentication: { ignoreClients: [], arc: { trustedSealers: ["b.test"] } } } });
  try {
    await b.mta.accounts.addAlias("team@b.test", "carol@c.test");
    await submit(a, "a", "alice@a.test", "team@b.test", "Plans", "For the team.\n");
    const [msg] = await until(async () => (await c.maildir("carol@c.test")).length === 1 && c.maildir("carol@c.test"), "delivery at C", { ms: 30_000 });
    const f = fields(msg);
    assert.ok(f.includes("Subject: [team] Plans"), "B's change is there");
    const cAr = f.find((l) => l.startsWith("Authentication-Results: mx.c.test;"))!;
    assert.match(cAr, /; spf=fail \(mx\.c\.test: domain of alice@a\.test does not designate 127\.0\.0\.3 as permitted sender\) smtp\.mailfrom=a\.test;/);
    assert.match(cAr, /; dkim=fail \(body hash did not verify|; dkim=fail \(bad signature\)/);
    assert.match(cAr, /; arc=pass \(i=1 spf=pass dkim=pass dkdomain=a\.test dkim=pass dkdomain=a\.test dmarc=pass fromdomain=a\.test\) smtp\.remote-ip=127\.0\.0\.3;/);
    assert.match(cAr, /; dmarc=fail \(p=REJECT arc=pass\) policy\.dmarc=reject header\.from=a\.test$/);
    // B's set, by b.test's RSA key, over what B forwarded; dkimpy validates the chain as delivered.
    assert.match(f.find((l) => l.startsWith("ARC-Seal:"))!, /^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none; d=b\.test; s=rsa;/);
    assert.match(f.find((l) => l.startsWith("ARC-Authentication-Results:"))!, /^ARC-Authentication-Results: i=1; mx\.b\.test; spf=pass .* dmarc=pass \(p=REJECT arc=none\) policy\.dmarc=reject header\.from=a\.test$/);
    assert.equal((await dkimpyArcVerify(crlf(msg), records)).cv, "pass");
  } finally {
    await a.close();
    await b.close();
    await c.close();
  }
});

test("the same forward without B's seal is refused by C (550 5.7.1), and alice gets the bounce", async () => {
  const a = await instance("a");
  // B has no keys, so nothing to seal with; C trusts b.test all the same.
  const b = await instance("b", { sign: false, checks: [subjectTag] });
  const c = await instance("c", { config: { authentication: { ignoreClients: [], arc: { trustedSealers: ["b.test"] } } } });
  try {
    await b.mta.accounts.addAlias("team@b.test", "carol@c.test");
    await submit(a, "a", "alice@a.test", "team@b.test", "Plans", "For the team.\n");
    const dsn = await until(async () => (await a.maildir("alice@a.test")).find((m) => m.includes("Final-Recipient: rfc822; team@b.test")), "the DSN at A", { ms: 30_000 });
    assert.match(dsn, /Remote-MTA: dns; ?mx\.c\.test/);
    assert.match(dsn.replace(/\n /g, " "), /\nDiagnostic-Code: smtp; 550 5\.7\.1 Message rejected: the DMARC policy of a\.test is reject, and this message passed neither SPF nor DKIM for a\.test\n/);
    assert.deepEqual(await c.maildir("carol@c.test"), []);
  } finally {
    await a.close();
    await b.close();
    await c.close();
  }
});

test("a DSN A composes is signed by a.test: B verifies it (dkim=pass, dmarc=pass for mx.a.test), and so does dkimpy", async () => {
  const a = await instance("a", { config: { delivery: { quotaFull: "bounce" } } });
  const b = await instance("b");
  try {
    await a.mta.accounts.addUser("tiny@a.test", "tiny-password-123", { quota: 100 });
    await submit(b, "b", "bob@b.test", "tiny@a.test", "Too big", "x".repeat(500));
    const [dsn] = await until(async () => (await b.maildir("bob@b.test")).length === 1 && b.maildir("bob@b.test"), "the DSN at B", { ms: 30_000 });
    const f = fields(dsn);
    assert.ok(f.includes("From: Mail Delivery System <MAILER-DAEMON@mx.a.test>"));
    const ar = f.find((l) => l.startsWith("Authentication-Results: mx.b.test;"))!;
    assert.match(ar, /; spf=pass \(mx\.b\.test: domain of postmaster@mx\.a\.test designates 127\.0\.0\.2 as permitted sender\) smtp\.helo=mx\.a\.test;/);
    assert.match(ar, /; dkim=pass header\.d=a\.test header\.i=@a\.test header\.s=rsa header\.a=rsa-sha256 header\.b=\S+; dkim=pass header\.d=a\.test header\.i=@a\.test header\.s=ed /);
    assert.match(ar, /; dmarc=pass \(p=REJECT arc=none\) policy\.dmarc=reject header\.from=mx\.a\.test$/);
    assert.deepEqual(await dkimpyVerify(crlf(dsn), records), [{ pass: true }, { pass: true }]);
  } finally {
    await a.close();
    await b.close();
  }
});

test("a selector in dkim.domains without its key stops start-up with the path and the command that makes it; the data directory is left unlocked", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-auth-nokey-"));
  dirs.push(dir);
  const config = parseConfig({
    workers: 1, hostname: "mx.a.test", dataDir: dir, domains: ["a.test"],
    listeners: [{ address: ADDRESS.a, port: 0, role: "mx" }],
    dns: { servers: [dns.server] }, log: { level: "silent" }, admin: { enabled: false },
    dkim: { domains: { "a.test": { selectors: ["missing"] } } },
  }, "test");
  const start = () => startMta(config, { log: pino({ level: "silent" }), errorSleep: 0, fsync: false, controlSocket: false });
  await assert.rejects(start(), (err: Error) => {
    assert.equal(err.message, `DKIM keys in dkim.domains cannot be used:\n  no DKIM key ${join(dir, "dkim", "a.test", "missing.key")}: create it with "petrel dkim keygen a.test --selector missing"`);
    return true;
  });
  // Made, it starts (the lock of the failed start was released).
  await generateDkimKey(dir, "a.test", "missing", "rsa");
  const mta = await start();
  await mta.close();
});
