/**
 * TLS reporting of a cluster end to end: two whole sending Petrels (storage.kind postgres, one
 * private PostgreSQL) each deliver a message over TLS to far.test's MX, a real receiving Petrel;
 * after midnight (their shared clock is injected) far.test receives ONE report, with both nodes'
 * sessions, sent by one of them through the shared queue.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import nodemailer from "nodemailer";
import pgClient from "pg";
import pino from "pino";
import { ManualClock } from "../../src/mail/clock.ts";
import { reportsInMessage } from "../../src/tls-rpt/inbound.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { startPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { createTestCa, type TestCa } from "../support/test-ca.ts";
import { until } from "../support/until.ts";
import { start, type Running } from "./fixtures/mta-helpers.ts";
import { startReceiver, type Receiver } from "./fixtures/outbound-tls.ts";

let pg: PrivatePostgres;
let ca: TestCa;
let dns: TestDnsServer;
let rx: Receiver;

before(async () => {
  pg = await startPostgres({ host: "127.0.64.10" });
  ca = await createTestCa();
  rx = await startReceiver({ hostname: "mx.far.test", domains: ["far.test"], pair: await ca.issue(["mx.far.test"]), address: "127.0.64.11" });
  dns = await startDnsServer({
    "far.test": { MX: [[10, "mx.far.test"]] },
    "mx.far.test": { A: ["127.0.64.11"] },
    "_smtp._tls.far.test": { TXT: ["v=TLSRPTv1; rua=mailto:postmaster@far.test"] },
  }, { address: "127.0.64.12" });
});
after(async () => {
  await rx?.stop();
  await dns?.close();
  await pg?.close();
});

async function node(name: string, address: string, clock: ManualClock): Promise<Running> {
  return start({
    hostname: `${name}.example.test`,
    listeners: [{ address, port: 0, role: "mx" }, { address, port: 0, role: "submission" }],
    storage: { kind: "postgres", url: pg.url, poolSize: 8, node: name },
    dns: { servers: [dns.server], dnssec: false },
    outbound: { port: rx.port },
    tlsRpt: { organization: "Example Cluster", submitter: "example.test", contact: "tls@example.test" },
  }, undefined, pino({ level: "silent" }), { ca: ca.cert, clock });
}

async function send(tx: Running, address: string, to: string): Promise<void> {
  const t = nodemailer.createTransport({
    host: address, port: tx.submission, requireTLS: true, tls: { rejectUnauthorized: false },
    auth: { user: "alice@example.test", pass: "alice-password" },
  });
  try {
    await t.sendMail({ from: "alice@example.test", to, subject: "via a node", text: "hello\n" });
  } finally {
    t.close();
  }
}

test("two nodes' TLS sessions to far.test are in one report, sent once for the cluster", { timeout: 90_000 }, async () => {
  const clock = new ManualClock(Date.now());
  const nodes = [await node("mx1", "127.0.64.13", clock), await node("mx2", "127.0.64.14", clock)];
  const db = new pgClient.Client({ connectionString: pg.url });
  await db.connect();
  try {
    const day = new Date(clock.now()).toISOString().slice(0, 10);
    await send(nodes[0], "127.0.64.13", "postmaster@far.test");
    await send(nodes[1], "127.0.64.14", "postmaster@far.test");
    await until(async () => (await rx.received()).length === 2 || undefined, "both messages at far.test's MX");

    // A minute on, each node writes its count to the database (as it does every minute, long
    // before midnight: one jump of the clock to the next day would race the write against the run).
    clock.advance(61_000);
    await until(async () => (await db.query<{ n: string }>("SELECT coalesce(sum(successful), 0) AS n FROM tlsrpt_policy WHERE day = $1", [day])).rows[0].n === "2" || undefined, "both nodes' counts written");
    // Past the next midnight and the hour after it: both nodes' daily runs have begun.
    const midnight = Date.parse(`${day}T00:00:00Z`) + 86_400_000;
    clock.advance(midnight - clock.now() + 3_600_000 + 60_000);
    const isReport = (m: { body: string }) => /^TLS-Report-Domain: far\.test\r?$/m.test(m.body);
    const first = await until(async () => (await rx.received()).find(isReport), "the report at far.test", { ms: 30_000 });
    await until(async () => (await db.query<{ done: boolean }>("SELECT done FROM tlsrpt_day WHERE day = $1", [day])).rows[0]?.done, "the day done in the database");
    for (const n of nodes) await n.mta.queue.idle();

    const reports = (await rx.received()).filter(isReport);
    assert.equal(reports.length, 1, "one report for the cluster, not one per node");
    assert.deepEqual(first.envelope.recipients.map((r) => (typeof r === "string" ? r : r.address)), ["postmaster@far.test"]);
    const [report] = reportsInMessage("r", Buffer.from(first.body));
    assert.equal(report.organization, "Example Cluster");
    assert.equal(report.reportId, `${day}.far.test@example.test`);
    assert.deepEqual(report.policies.map((p) => [p.type, p.domain, p.successful, p.failed]), [["no-policy-found", "far.test", 2, 0]]);
  } finally {
    await db.end();
    for (const n of nodes) {
      await n.stop();
      await rm(n.dir, { recursive: true, force: true });
    }
  }
});
