/**
 * The whole path of a message across the "internet": two Petrel instances on
 * two loopback addresses (127.0.0.2 = a.test, 127.0.0.3 = b.test) and a DNS
 * server on loopback with their MX records. `petrel send` submits to A with
 * STARTTLS and AUTH; A looks up b.test's MX and transfers over SMTP with
 * STARTTLS; B delivers into bob's Maildir. Then the failure paths.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { sendCommand } from "../../src/cli/send.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { portFreeOn } from "../support/ports.ts";

let dns: TestDnsServer;
/** One port number free on every address used, so "port 25" is the same everywhere. */
let mxPort: number;
const dirs: string[] = [];

before(async () => {
  mxPort = await portFreeOn(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
  dns = await startDnsServer({
    "a.test": { MX: [[10, "mx.a.test"]] },
    "mx.a.test": { A: ["127.0.0.2"] },
    "b.test": { MX: [[10, "mx.b.test"]] },
    "mx.b.test": { A: ["127.0.0.3"] },
    "null.test": { MX: [[0, "."]] },
    // Two MX hosts: the preferred one (127.0.0.4) has nothing listening.
    "two.test": { MX: [[10, "down.two.test"], [20, "mx.b.test"]] },
    "down.two.test": { A: ["127.0.0.4"] },
  });
});
after(async () => {
  await dns?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Instance {
  mta: Mta;
  dir: string;
  submission: number;
  maildir(address: string): Promise<string[]>;
}

async function instance(name: "a" | "b", domains: string[], dir?: string, extra: Record<string, unknown> = {}, ca?: string): Promise<Instance> {
  if (!dir) {
    dir = await mkdtemp(join(tmpdir(), `petrel-${name}-`));
    dirs.push(dir);
  }
  const address = name === "a" ? "127.0.0.2" : "127.0.0.3";
  const config = parseConfig({
    admin: { enabled: false },
    hostname: `mx.${name}.test`,
    workers: 1,
    dataDir: dir,
    domains,
    listeners: [
      { address, port: mxPort, role: "mx" },
      { address, port: 0, role: "submission" },
    ],
    dns: { servers: [dns.server] },
    outbound: { port: mxPort, connectionReuse: 0, sourceAddress: address },
    queue: { minBackoff: 1 },
    limits: { shutdownGrace: 2 },
    log: { level: "silent" },
    ...extra,
  }, "test");
  const mta = await startMta(config, { log: pino({ level: "silent" }), errorSleep: 0, fsync: false, controlSocket: false, ...(ca ? { ca } : {}) });
  const user = name === "a" ? "alice@a.test" : "bob@b.test";
  if (!(await mta.accounts.getUser(user))) await mta.accounts.addUser(user, `${name}-password`);
  const d = dir;
  return {
    mta, dir: d,
    submission: mta.smtp.listeners.find((l) => l.role === "submission")!.port,
    async maildir(addr) {
      const [local, domain] = addr.split("@");
      const nd = join(d, "mail", domain, local, "new");
      const names = (await readdir(nd).catch(() => [] as string[])).sort();
      return Promise.all(names.map((n) => readFile(join(nd, n), "utf8")));
    },
  };
}

async function until<T>(what: () => Promise<T | undefined | false>, label: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await what();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${label}`);
}

/** `petrel send` in-process, the password from a file (never argv). */
async function petrelSend(args: string[], password: string): Promise<{ code: number; out: string; err: string }> {
  const { writeFile } = await import("node:fs/promises");
  const pwFile = join(dirs[0], `pw-${Math.random().toString(36).slice(2)}`);
  await writeFile(pwFile, password + "\n", { mode: 0o600 });
  let out = "";
  let err = "";
  const stdin = new PassThrough();
  stdin.end();
  const code = await sendCommand([...args, "--password-file", pwFile, "--insecure"], {
    stdin, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) },
  } as never);
  return { code, out, err };
}

test("alice@a.test → A (submission, STARTTLS, AUTH) → MX lookup → B (SMTP, STARTTLS) → bob's Maildir, and back", async () => {
  const a = await instance("a", ["a.test"]);
  const b = await instance("b", ["b.test"]);
  try {
    const sent = await petrelSend([
      "--server", `127.0.0.2:${a.submission}`, "--tls", "starttls", "--user", "alice@a.test",
      "--from", "alice@a.test", "--to", "bob@b.test", "--subject", "Grüße über das Netz", "--text", "Hallo Bob!\n.dot line\n",
    ], "a-password");
    assert.equal(sent.code, 0, sent.err + sent.out);
    const aId = /queued as (\S+)/.exec(sent.out)?.[1];
    assert.ok(aId, sent.out);

    const [msg] = await until(async () => (await b.maildir("bob@b.test")).length === 1 && b.maildir("bob@b.test"), "delivery at B");
    // Trace fields: B's Received (from A, over TLS) above A's Received (from the client, authenticated).
    assert.match(msg, /^Return-Path: <alice@a\.test>\nX-Original-To: bob@b\.test\nDelivered-To: bob@b\.test\nReceived: from mx\.a\.test \(\[127\.0\.0\.2\]\)\n\t\(using TLSv1\.3 with cipher [^)]+\)\n\tby mx\.b\.test \(Petrel\) with ESMTPS id \S+\n\tfor <bob@b\.test>; .+\nReceived: from \S+ \(\[127\.0\.0\.[0-9]+\]\)\n\t\(using TLSv1\.3 with cipher [^)]+\)\n\tby mx\.a\.test \(Petrel\) with ESMTPSA id /);
    assert.ok(msg.includes(`with ESMTPSA id ${aId}`), "A's queue id in A's Received");
    assert.match(msg, /\nSubject: =\?UTF-8\?/);
    assert.match(msg, /\nMessage-ID: <[^>]+>\n/);
    assert.ok(msg.includes("\n\nHallo Bob!\n.dot line\n"), msg);
    await until(async () => (await a.mta.queue.list()).length === 0 && (await b.mta.queue.list()).length === 0, "queues empty");

    // And the reverse direction.
    const back = await petrelSend([
      "--server", `127.0.0.3:${b.submission}`, "--user", "bob@b.test",
      "--from", "bob@b.test", "--to", "alice@a.test", "--subject", "Re: Grüße", "--text", "Danke!",
    ], "b-password");
    assert.equal(back.code, 0, back.err + back.out);
    const [reply] = await until(async () => (await a.maildir("alice@a.test")).length === 1 && a.maildir("alice@a.test"), "delivery at A");
    assert.match(reply, /^Return-Path: <bob@b\.test>\nX-Original-To: alice@a\.test\nDelivered-To: alice@a\.test\nReceived: from mx\.b\.test/);
  } finally {
    await a.mta.close();
    await b.mta.close();
  }
});

test("failure paths: MX refusing connections is retried and delivered when it is back; 550 and null MX bounce; a down MX is skipped", async () => {
  const a = await instance("a", ["a.test"]);
  let b: Instance | null = null;
  try {
    const send = (to: string) => petrelSend([
      "--server", `127.0.0.2:${a.submission}`, "--user", "alice@a.test", "--from", "alice@a.test", "--to", to, "--subject", `to ${to}`, "--text", "hi",
    ], "a-password");

    // B is down: connection refused → deferred with the reason, retried later.
    assert.equal((await send("bob@b.test")).code, 0);
    const id = await until(async () => {
      const m = (await a.mta.queue.list()).find((x) => x.recipients[0].address === "bob@b.test");
      return m && m.recipients[0].status === "deferred" && m.id;
    }, "deferral");
    assert.match((await a.mta.queue.get(id))!.item.recipients[0].lastError ?? "", /^4\.4\.1 connect to mx\.b\.test\[127\.0\.0\.3\]: ECONNREFUSED/);

    // B comes back; the retry delivers.
    b = await instance("b", ["b.test", "two.test"]);
    await a.mta.queue.retry(id);
    await until(async () => (await b!.maildir("bob@b.test")).length === 1, "delivery after retry");

    // B answers 550 for an unknown user → alice gets a DSN with B's reply.
    assert.equal((await send("nobody@b.test")).code, 0);
    const [dsn] = await until(async () => (await a.maildir("alice@a.test")).length === 1 && a.maildir("alice@a.test"), "DSN for 550");
    assert.match(dsn, /Final-Recipient: rfc822; ?nobody@b\.test/);
    assert.match(dsn, /Status: 5\.1\.1/);
    assert.match(dsn, /Remote-MTA: dns; ?mx\.b\.test/);
    assert.match(dsn, /Diagnostic-Code: smtp; ?550 5\.1\.1 <nobody@b\.test>: Recipient address rejected/);

    // Null MX → immediate DSN with 5.1.10.
    assert.equal((await send("anyone@null.test")).code, 0);
    const dsns = await until(async () => (await a.maildir("alice@a.test")).length === 2 && a.maildir("alice@a.test"), "DSN for null MX");
    const nullMx = dsns.find((m) => m.includes("anyone@null.test"));
    assert.ok(nullMx, "a DSN names the null-MX recipient");
    assert.match(nullMx, /Final-Recipient: rfc822; ?anyone@null\.test/);
    assert.match(nullMx, /Status: 5\.1\.10/);

    // two.test: the preferred MX (127.0.0.4) is down, the second (B) takes it.
    await b.mta.accounts.addUser("carol@two.test", "c");
    assert.equal((await send("carol@two.test")).code, 0);
    await until(async () => (await b!.maildir("carol@two.test")).length === 1, "delivery via the second MX");
    await until(async () => (await a.mta.queue.list()).length === 0, "A's queue empty");
  } finally {
    await a.mta.close();
    await b?.mta.close();
  }
});

test("smarthost: A relays all non-local mail through B's submission port with verified STARTTLS and AUTH", async () => {
  const b = await instance("b", ["b.test"], undefined, { submission: { senderMustMatchLogin: false } });
  const { writeFile } = await import("node:fs/promises");
  const pw = join(b.dir, "relay-password");
  await writeFile(pw, "b-password\n", { mode: 0o600 });
  const ca = await readFile(join(b.dir, "tls", "self-signed.crt"), "utf8");
  const a = await instance("a", ["a.test"], undefined, {
    transport: [{ domains: ["*"], type: "smtp", host: "mx.b.test", port: b.submission, tls: "required", auth: { user: "bob@b.test", passwordFile: pw } }],
  }, ca);
  try {
    await b.mta.accounts.addUser("carol@b.test", "c");
    const sent = await petrelSend([
      "--server", `127.0.0.2:${a.submission}`, "--user", "alice@a.test", "--from", "alice@a.test", "--to", "carol@b.test", "--subject", "via the smarthost", "--text", "relayed",
    ], "a-password");
    assert.equal(sent.code, 0, sent.err);
    const [msg] = await until(async () => (await b.maildir("carol@b.test")).length === 1 && b.maildir("carol@b.test"), "delivery through the smarthost");
    // B received it on its submission listener, authenticated, over TLS (ESMTPSA), from A's address.
    assert.match(msg, /^Return-Path: <alice@a\.test>\nX-Original-To: carol@b\.test\nDelivered-To: carol@b\.test\nReceived: from mx\.a\.test \(\[127\.0\.0\.2\]\)\n\t\(using TLSv1\.[23] with cipher [^)]+\)\n\tby mx\.b\.test \(Petrel\) with ESMTPSA id /);
    await until(async () => (await a.mta.queue.list()).length === 0, "A's queue empty");
  } finally {
    await a.mta.close();
    await b.mta.close();
  }
});

test("a forwarding loop between two instances (loop@a.test → loop@b.test → loop@a.test) stops at the hop limit: refused 554 5.4.6 at DATA, one DSN to the sender", async () => {
  const a = await instance("a", ["a.test"]);
  const b = await instance("b", ["b.test"]);
  try {
    await a.mta.accounts.addAlias("loop@a.test", "loop@b.test");
    await b.mta.accounts.addAlias("loop@b.test", "loop@a.test");
    const sent = await petrelSend([
      "--server", `127.0.0.2:${a.submission}`, "--user", "alice@a.test", "--from", "alice@a.test", "--to", "loop@a.test", "--subject", "round and round", "--text", "hi",
    ], "a-password");
    assert.equal(sent.code, 0, sent.err);

    // Hop n (A's submission is 1) arrives with n-1 Received: fields; hop 50, A → B, would
    // carry 50 with B's own: B refuses it and A bounces it to alice — once.
    const [dsn] = await until(async () => (await a.maildir("alice@a.test")).length === 1 && a.maildir("alice@a.test"), "the DSN", 60_000);
    await until(async () => (await a.mta.queue.list()).length === 0 && (await b.mta.queue.list()).length === 0, "both queues empty", 30_000);
    assert.match(dsn, /^Return-Path: <>\n/);
    assert.match(dsn, /Final-Recipient: rfc822; ?loop@a\.test/);
    assert.match(dsn, /Action: failed/);
    assert.match(dsn, /Status: 5\.4\.6/);
    assert.match(dsn, /Remote-MTA: dns; ?mx\.b\.test/);
    assert.match(dsn, /Diagnostic-Code: smtp; ?554 5\.4\.6 Error: mail forwarding loop: too many hops\n? \(50 Received: fields, limit 50\)\n/);
    // The copy returned went round exactly to the limit: 49 hops, A and B alternating.
    assert.equal(dsn.match(/\n\tby mx\.a\.test \(Petrel\) with /g)?.length, 25, "A's hops");
    assert.equal(dsn.match(/\n\tby mx\.b\.test \(Petrel\) with /g)?.length, 24, "B's hops");
    // Nothing else anywhere: no second DSN, no bounce of the bounce, no copy delivered.
    await a.mta.queue.idle();
    await b.mta.queue.idle();
    assert.equal((await a.maildir("alice@a.test")).length, 1);
    assert.deepEqual(await readdir(join(b.dir, "mail")).catch(() => []), [], "B delivered nothing");
    assert.deepEqual(await readdir(join(a.dir, "mail", "a.test")), ["alice"], "A delivered only alice's DSN");
  } finally {
    await a.mta.close();
    await b.mta.close();
  }
});
