/**
 * Success DSNs across a relay (RFC 3461), with real servers on loopback and
 * a loopback DNS server for the MX records:
 *
 *   A = Petrel, mx.a.test (127.0.0.61): the sender's server (alice, carol)
 *   B = Petrel, mx.b.test (127.0.0.62): offers DSN, delivers bob locally
 *   P = Postfix, mx.pf.test (127.0.0.63): smtpd_discard_ehlo_keywords = dsn
 *
 * NOTIFY=SUCCESS relayed by A to B: A passes NOTIFY, ORCPT, RET and ENVID
 * on and says nothing itself; the sender receives exactly one report, B's
 * (Action: delivered). Relayed by A to P, which does not offer DSN: A sends
 * the one report, Action: relayed.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { SmtpConnection } from "../../src/client/smtp-connection.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { portFreeOn } from "../support/ports.ts";
import { until as poll } from "../support/until.ts";
import { requirePostfix, startPostfix, type Postfix } from "./postfix.ts";

const A = "127.0.0.61";
const B = "127.0.0.62";
const P = "127.0.0.63";

interface Instance {
  readonly mta: Mta;
  readonly dir: string;
  readonly submission: number;
}

let dns: TestDnsServer | undefined;
let pf: Postfix | undefined;
const instances: Instance[] = [];
let a: Instance;
let b: Instance;
let mxPort = 0;

async function petrel(hostname: string, address: string, domains: string[], users: string[]): Promise<Instance> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-dsn-"));
  const config = parseConfig({
    admin: { enabled: false },
    hostname, dataDir: dir, domains, workers: 1,
    listeners: [{ address, port: mxPort, role: "mx" }, { address, port: 0, role: "submission" }],
    dns: { servers: [dns!.server] },
    outbound: { port: mxPort, connectionReuse: 0, sourceAddress: address },
    queue: { minBackoff: 1 },
    limits: { shutdownGrace: 2 },
    log: { level: "silent" },
  }, "test");
  const mta = await startMta(config, { log: pino({ level: "silent" }), errorSleep: 0, fsync: false, controlSocket: false });
  for (const u of users) await mta.accounts.addUser(u, `${u}-password`);
  const i = { mta, dir, submission: mta.smtp.listeners.find((l) => l.role === "submission")!.port };
  instances.push(i);
  return i;
}

async function maildir(dir: string, address: string): Promise<string[]> {
  const [local, domain] = address.split("@");
  const nd = join(dir, "mail", domain, local, "new");
  const names = (await readdir(nd).catch(() => [] as string[])).sort();
  return Promise.all(names.map((n) => readFile(join(nd, n), "utf8")));
}

/** Polls for what the servers did; a timeout shows Postfix's log. */
function until<T>(what: () => Promise<T | undefined | false>, label: string): Promise<T> {
  return poll(what, label, { ms: 20_000, context: async () => (pf ? `--- Postfix log ---\n${await pf.log()}` : "") });
}

/** Both Petrels have nothing queued, in flight, or about to be queued. */
async function settled(): Promise<void> {
  await until(async () => {
    for (const i of instances) await i.mta.queue.idle();
    return (await Promise.all(instances.map((i) => i.mta.queue.list()))).every((l) => l.length === 0);
  }, "the queues to empty");
}

/** Submit to A as `from` with a DSN request for `to` (NOTIFY=SUCCESS, ORCPT, RET=HDRS, ENVID). */
async function submit(from: string, to: string, envid: string): Promise<void> {
  const c = await SmtpConnection.connect({ host: A, port: a.submission, tls: "starttls", verifyCertificate: false, heloName: "client.a.test" });
  try {
    await c.auth(from, `${from}-password`);
    const r = await c.send({
      mailFrom: from,
      mailParams: { ret: "HDRS", envid },
      recipients: [{ address: to, notify: ["SUCCESS"], orcpt: `rfc822;${to}` }],
      message: Buffer.from(`From: <${from}>\r\nTo: <${to}>\r\nSubject: please confirm\r\nMessage-ID: <${envid}@a.test>\r\n\r\nsecret body text\r\n`),
    });
    assert.equal(r.final?.code, 250, JSON.stringify(r));
  } finally {
    await c.quit();
  }
}

before(async () => {
  requirePostfix();
  mxPort = await portFreeOn([A, B, P]);
  dns = await startDnsServer({
    "a.test": { MX: [[10, "mx.a.test"]] },
    "mx.a.test": { A: [A] },
    "b.test": { MX: [[10, "mx.b.test"]] },
    "mx.b.test": { A: [B] },
    "pf.test": { MX: [[10, "mx.pf.test"]] },
    "mx.pf.test": { A: [P] },
  });
  pf = await startPostfix({
    address: P, port: mxPort, hostname: "mx.pf.test", domains: ["pf.test"], mailboxes: ["user@pf.test"],
    extraMainCf: { smtpd_discard_ehlo_keywords: "dsn" },
  });
  a = await petrel("mx.a.test", A, ["a.test"], ["alice@a.test", "carol@a.test"]);
  b = await petrel("mx.b.test", B, ["b.test"], ["bob@b.test"]);
});

after(async () => {
  for (const i of instances) {
    await i.mta.close();
    await rm(i.dir, { recursive: true, force: true });
  }
  await pf?.stop();
  await dns?.close();
});

test("NOTIFY=SUCCESS relayed A → B (B offers DSN): the sender gets exactly one report, B's Action: delivered with the ORCPT and ENVID given to A", async () => {
  await submit("alice@a.test", "bob@b.test", "ENV-42+b");

  const [msg] = await until(async () => (await maildir(b.dir, "bob@b.test")).length === 1 && maildir(b.dir, "bob@b.test"), "delivery to bob at B");
  assert.match(msg, /\nsecret body text\n/);
  await until(async () => (await maildir(a.dir, "alice@a.test")).length >= 1, "a report to alice");
  await settled();
  const reports = await maildir(a.dir, "alice@a.test");
  assert.equal(reports.length, 1, `exactly one report, got:\n${reports.join("\n=====\n")}`);
  const dsn = reports[0];
  assert.match(dsn, /^Return-Path: <>\n/);
  assert.match(dsn, /\nReporting-MTA: dns; ?mx\.b\.test\n/, "B's report, not A's");
  assert.match(dsn, /\nOriginal-Envelope-Id: ENV-42\+b\n/);
  assert.match(dsn, /\nOriginal-Recipient: rfc822; ?bob@b\.test\n/);
  assert.match(dsn, /\nFinal-Recipient: rfc822; ?bob@b\.test\n/);
  assert.match(dsn, /\nAction: delivered\n/);
  assert.match(dsn, /\nStatus: 2\.0\.0\n/);
  assert.doesNotMatch(dsn, /secret body text/, "RET=HDRS: headers only");
  assert.doesNotMatch(dsn, /Action: relayed/);
});

test("NOTIFY=SUCCESS relayed A → Postfix with DSN hidden: A sends the one report, Action: relayed, naming Postfix as the Remote-MTA", async () => {
  await submit("carol@a.test", "user@pf.test", "ENV-43+pf");

  const [got] = await until(async () => (await pf!.maildir("user@pf.test")).length === 1 && pf!.maildir("user@pf.test"), "delivery at Postfix");
  assert.match(got.toString("utf8"), /\nsecret body text\n/);
  await until(async () => (await maildir(a.dir, "carol@a.test")).length >= 1, "a report to carol");
  await settled();
  const reports = await maildir(a.dir, "carol@a.test");
  assert.equal(reports.length, 1, `exactly one report, got:\n${reports.join("\n=====\n")}`);
  const dsn = reports[0];
  assert.match(dsn, /\nReporting-MTA: dns; ?mx\.a\.test\n/);
  assert.match(dsn, /\nOriginal-Envelope-Id: ENV-43\+pf\n/);
  assert.match(dsn, /\nOriginal-Recipient: rfc822; ?user@pf\.test\n/);
  assert.match(dsn, /\nFinal-Recipient: rfc822; ?user@pf\.test\n/);
  assert.match(dsn, /\nAction: relayed\n/);
  assert.match(dsn, /\nStatus: 2\.0\.0\n/);
  assert.match(dsn, /\nRemote-MTA: dns; ?mx\.pf\.test\n/);
  assert.match(dsn, /\nDiagnostic-Code: smtp; ?250 2\.0\.0 Ok: queued as /);
  assert.deepEqual(await pf!.queue(), [], "Postfix holds nothing (it sends no report of its own)");
});
