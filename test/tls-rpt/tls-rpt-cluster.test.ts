/**
 * TLS-RPT across the nodes of a cluster (storage.kind postgres), against a private PostgreSQL:
 * every node's sessions go into one count per day and policy domain, and each policy domain gets
 * one report a day, sent by one node, with the cluster's totals (RFC 8460 §4). Report mail is
 * counted where the sender hands it to the intake; HTTPS reports arrive at a real HTTPS
 * collector; `_smtp._tls` records come from a loopback DNS server. Time is a manual clock.
 */
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import { ManualClock } from "../../src/mail/clock.ts";
import type { PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { PostgresTlsRptCounts } from "../../src/storage/postgres/postgres-tls-rpt-counts.ts";
import { TlsReportSender } from "../../src/tls-rpt/report-sender.ts";
import { reportsInMessage, type ReceivedReport } from "../../src/tls-rpt/inbound.ts";
import type { TlsReport } from "../../src/tls-rpt/report.ts";
import type { PolicyCounts } from "../../src/tls-rpt/day-counts.ts";
import type { FailureDetail, TlsSessionResult } from "../../src/tls-rpt/session-result.ts";
import { createResolver, type ClosableResolver } from "../../src/dns/resolver.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { createTestCa, type TestCa } from "../support/test-ca.ts";
import { until } from "../support/until.ts";

const DAY = 86_400_000;
const MINUTE = 60_000;
const sts: TlsSessionResult["policy"] = { type: "sts", domain: "b.test", lines: ["version: STSv1", "mode: enforce", "mx: mx.b.test", "max_age: 86400"], mxHost: ["mx.b.test"] };
const expired: FailureDetail = { resultType: "certificate-expired", receivingMxHostname: "mx.b.test", receivingIp: "192.0.2.1" };
const noStarttls: FailureDetail = { resultType: "starttls-not-supported", receivingMxHostname: "mx.b.test", receivingIp: "192.0.2.2" };
const mismatch: FailureDetail = { resultType: "certificate-host-mismatch", receivingMxHostname: "mx.b.test", receivingIp: "192.0.2.3", sendingMtaIp: "198.51.100.7" };
const cPolicy: TlsSessionResult["policy"] = { type: "no-policy-found", domain: "c.test" };

let server: PrivatePostgres;
let pool: PostgresPool;
let dns: TestDnsServer;
let resolver: ClosableResolver;
let ca: TestCa;
let collector: https.Server;
const posted: { path: string; report: TlsReport }[] = [];

before(async () => {
  ({ server, pool } = await startMigratedPostgres({ host: "127.0.64.1", poolSize: 12, node: "test" }));
  ca = await createTestCa();
  const pair = await ca.issue(["reports.b.test"]);
  collector = https.createServer({ cert: pair.cert, key: pair.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      posted.push({ path: req.url ?? "", report: JSON.parse(gunzipSync(Buffer.concat(chunks)).toString()) as TlsReport });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, "127.0.64.3", resolve));
  const port = (collector.address() as AddressInfo).port;
  dns = await startDnsServer({
    "_smtp._tls.b.test": { TXT: [`v=TLSRPTv1; rua=mailto:tls@b.test,https://reports.b.test:${port}/v1/tlsrpt`] },
    "reports.b.test": { A: ["127.0.64.3"] },
    "_smtp._tls.c.test": { TXT: ["v=TLSRPTv1; rua=mailto:tls@c.test"] },
  }, { address: "127.0.64.2" });
  resolver = createResolver({ servers: [dns.server], cacheSize: 0, tries: 1, timeout: 500 });
});
after(async () => {
  resolver?.close();
  await dns?.close();
  await new Promise<void>((resolve) => (collector ? collector.close(() => resolve()) : resolve()));
  await stopMigratedPostgres(server, pool);
});
beforeEach(async () => {
  await pool.query("DELETE FROM tlsrpt_day");
  posted.length = 0;
  dns.setBehaviour("_smtp._tls.b.test", undefined);
});

function counts(node: string, clock: ManualClock, o: { maxDomains?: number; maxFailureGroups?: number; errors?: string[] } = {}): PostgresTlsRptCounts {
  return new PostgresTlsRptCounts({ pool, node, clock, ...o, claimMs: 10 * MINUTE, onError: (m) => o.errors?.push(m) });
}

interface Mailed {
  readonly to: readonly string[];
  readonly report: ReceivedReport;
}

function sender(node: string, c: PostgresTlsRptCounts, clock: ManualClock, mailed: Mailed[]): TlsReportSender {
  return new TlsReportSender({
    aggregate: c, resolver, clock, from: `postmaster@${node}.a.test`, hostname: `${node}.a.test`, ca: ca.cert,
    identity: { organization: "Petrel Test", contact: "postmaster@a.test", submitter: `${node}.a.test` },
    submit: async (message, to) => {
      const [report] = reportsInMessage(`${node}-${mailed.length}`, message);
      mailed.push({ to, report });
      return `Q${mailed.length}`;
    },
  });
}

/** Sessions node 1 and node 2 made to b.test (and node 2 to c.test) on one day. */
function countSessions(one: PostgresTlsRptCounts, two: PostgresTlsRptCounts): void {
  for (let i = 0; i < 2; i++) one.record({ policy: sts });
  one.record({ policy: sts, failure: expired });
  one.record({ policy: sts, failure: noStarttls });
  for (let i = 0; i < 3; i++) two.record({ policy: sts });
  for (let i = 0; i < 2; i++) two.record({ policy: sts, failure: expired });
  two.record({ policy: sts, failure: mismatch });
  two.record({ policy: cPolicy });
}

/** The cluster's b.test counts of the day countSessions made. */
const bSummed: PolicyCounts[] = [{
  policy: sts, successful: 5, failed: 5,
  failures: [{ ...expired, count: 3 }, { ...mismatch, count: 1 }, { ...noStarttls, count: 1 }],
}];

function byType<T extends { resultType: string }>(groups: readonly T[]): T[] {
  return [...groups].sort((a, b) => a.resultType.localeCompare(b.resultType));
}

test("two nodes count the same policy domain on the same day: after their writes, the day holds the sums, failure groups merged by their key", async () => {
  const clock = new ManualClock(Date.parse("2026-03-01T10:00:00Z"));
  const one = counts("mx1", clock);
  const two = counts("mx2", clock);
  await one.start();
  await two.start();
  countSessions(one, two);
  // The minute's write comes from the clock, without a flush asked for.
  clock.advance(MINUTE);
  await until(async () => (await pool.query("SELECT 1 FROM tlsrpt_domain WHERE domain = 'c.test'")).rows.length > 0, "the scheduled write");
  await one.close();
  await two.close();

  const rows = await pool.query<{ n: string }>("SELECT (SELECT count(*) FROM tlsrpt_policy) + (SELECT count(*) FROM tlsrpt_failure) AS n");
  assert.equal(Number(rows.rows[0].n), 2 + 3, "one row per policy and per failure group, not one per session");

  clock.advance(DAY);
  assert.deepEqual(await one.finishedDays(), ["2026-03-01"]);
  const b = await one.takeReport("2026-03-01", new Set(), () => "id-1");
  assert.equal(b?.domain, "b.test");
  assert.deepEqual({ ...b!.policies[0], failures: byType(b!.policies[0].failures) }, bSummed[0]);
  const c = await two.takeReport("2026-03-01", new Set(), () => "id-2");
  assert.deepEqual(c, { domain: "c.test", reportId: "id-2", policies: [{ policy: cPolicy, successful: 1, failed: 0, failures: [] }] });
});

test("the bounds hold for the cluster: maxDomains a day and maxFailureGroups a policy, overflowing failures still in the totals", async () => {
  const clock = new ManualClock(Date.parse("2026-03-01T10:00:00Z"));
  const errors: string[] = [];
  const one = counts("mx1", clock, { maxDomains: 2, maxFailureGroups: 2, errors });
  const two = counts("mx2", clock, { maxDomains: 2, maxFailureGroups: 2, errors });
  one.record({ policy: sts, failure: expired });
  one.record({ policy: sts, failure: noStarttls });
  one.record({ policy: cPolicy });
  await one.flush();
  two.record({ policy: sts, failure: mismatch });
  two.record({ policy: sts, failure: expired });
  two.record({ policy: { type: "no-policy-found", domain: "d.test" } });
  await two.flush();
  const domains = await pool.query<{ domain: string }>("SELECT domain FROM tlsrpt_domain ORDER BY domain");
  assert.deepEqual(domains.rows.map((r) => r.domain), ["b.test", "c.test"], "the third domain is not counted");
  assert.match(errors.join("\n"), /more than 2 policy domains on 2026-03-01/);
  clock.advance(DAY);
  const b = await one.takeReport("2026-03-01", new Set(), () => "id");
  assert.equal(b?.policies[0].failed, 4, "the failure beyond the groups is in the total");
  assert.deepEqual(byType(b!.policies[0].failures).map((f) => [f.resultType, f.count]), [["certificate-expired", 2], ["starttls-not-supported", 1]]);
});

test("two senders run for the finished day at the same moment: one report per policy domain goes out, with the summed counts, and never again", async () => {
  const clock = new ManualClock(Date.parse("2026-03-01T10:00:00Z"));
  const one = counts("mx1", clock);
  const two = counts("mx2", clock);
  countSessions(one, two);
  await one.flush();
  await two.flush();
  clock.advance(Date.parse("2026-03-02T00:10:00Z") - clock.now());
  const mailed: Mailed[] = [];
  const s1 = sender("mx1", one, clock, mailed);
  const s2 = sender("mx2", two, clock, mailed);
  await Promise.all([s1.run(), s2.run(), s1.run(), s2.run()]);

  assert.deepEqual(mailed.map((m) => m.to).sort(), [["tls@b.test"], ["tls@c.test"]], "one mail per policy domain");
  assert.equal(posted.length, 1, "one HTTPS POST for b.test");
  const b = mailed.find((m) => m.to[0] === "tls@b.test")!.report;
  assert.equal(b.start, "2026-03-01T00:00:00Z");
  assert.deepEqual(b.policies.map((p) => [p.domain, p.successful, p.failed]), [["b.test", 5, 5]]);
  assert.deepEqual(b.policies[0].failures.map((f) => [f.resultType, f.count]).sort(), [["certificate-expired", 3], ["certificate-host-mismatch", 1], ["starttls-not-supported", 1]]);
  const summary = posted[0].report.policies[0].summary;
  assert.deepEqual([summary["total-successful-session-count"], summary["total-failure-session-count"]], [5, 5]);
  assert.equal(posted[0].report["report-id"], b.reportId, "the mail and the POST are one report");
  assert.equal(mailed.find((m) => m.to[0] === "tls@c.test")!.report.policies[0].successful, 1);

  await Promise.all([s1.run(), s2.run()]);
  clock.advance(DAY);
  await Promise.all([s1.run(), s2.run()]);
  assert.equal(mailed.length, 2, "not sent again");
  assert.equal(posted.length, 1);
  assert.deepEqual(await one.finishedDays(), []);
});

test("a node that took a report and died: once its hold is over another node sends it, under the report-id the first one chose", async () => {
  const clock = new ManualClock(Date.parse("2026-03-01T10:00:00Z"));
  const dead = counts("mx1", clock);
  const live = counts("mx2", clock);
  dead.record({ policy: sts });
  live.record({ policy: sts, failure: expired });
  await dead.flush();
  await live.flush();
  clock.advance(Date.parse("2026-03-02T00:10:00Z") - clock.now());
  const taken = await dead.takeReport("2026-03-01", new Set(), (d) => `2026-03-01.${d}@mx1.a.test`);
  assert.equal(taken?.domain, "b.test"); // …and mx1 is gone before sending it

  const mailed: Mailed[] = [];
  const s = sender("mx2", live, clock, mailed);
  await s.run();
  assert.equal(mailed.length, 0, "held by mx1");
  assert.deepEqual(await live.finishedDays(), ["2026-03-01"], "the day is kept while a report is out with a node");

  clock.advance(10 * MINUTE);
  await s.run();
  assert.deepEqual(mailed.map((m) => [m.to, m.report.reportId, m.report.policies[0].successful, m.report.policies[0].failed]), [[["tls@b.test"], "2026-03-01.b.test@mx1.a.test", 1, 1]]);
  assert.equal(posted.length, 1);
  await s.run();
  assert.equal(mailed.length, 1);
  assert.deepEqual(await live.finishedDays(), []);
});

test("a failed _smtp._tls lookup defers the report for the whole cluster to the next night; a day past keepDays is given up", async () => {
  const clock = new ManualClock(Date.parse("2026-03-01T10:00:00Z"));
  const one = counts("mx1", clock);
  const two = counts("mx2", clock);
  one.record({ policy: sts });
  two.record({ policy: sts });
  await one.flush();
  await two.flush();
  clock.advance(Date.parse("2026-03-02T00:10:00Z") - clock.now());
  const mailed: Mailed[] = [];
  const s1 = sender("mx1", one, clock, mailed);
  const s2 = sender("mx2", two, clock, mailed);
  dns.setBehaviour("_smtp._tls.b.test", "servfail");
  await s1.run();
  dns.setBehaviour("_smtp._tls.b.test", undefined);
  clock.advance(30 * MINUTE);
  await s2.run();
  assert.equal(mailed.length, 0, "not tried again before the next night's run");

  clock.advance(DAY);
  await s2.run();
  await s1.run();
  assert.deepEqual(mailed.map((m) => [m.to, m.report.policies[0].successful]), [[["tls@b.test"], 2]]);

  // A day whose lookups keep failing is given up after keepDays (3).
  clock.advance(Date.parse("2026-03-05T10:00:00Z") - clock.now());
  one.record({ policy: sts });
  await one.flush();
  dns.setBehaviour("_smtp._tls.b.test", "servfail");
  for (let night = 1; night <= 4; night++) {
    clock.advance(Date.parse(`2026-03-0${5 + night}T00:10:00Z`) - clock.now());
    await (night % 2 === 0 ? s1 : s2).run();
    assert.deepEqual(await one.finishedDays(), night <= 3 ? ["2026-03-05"] : [], `night ${night}`);
  }
  assert.equal(mailed.length, 1);
});

test("counts a node writes after the day's reports were taken are not sent as a second report; a day is not taken before every node wrote", async () => {
  const clock = new ManualClock(Date.parse("2026-03-01T23:59:30Z"));
  const errors: string[] = [];
  const one = counts("mx1", clock);
  const late = counts("mx2", clock, { errors });
  one.record({ policy: cPolicy });
  late.record({ policy: cPolicy });
  await one.flush();
  const mailed: Mailed[] = [];
  const s1 = sender("mx1", one, clock, mailed);
  clock.advance(MINUTE); // 00:00:30: mx2 has not written its last minute yet
  await s1.run();
  assert.equal(mailed.length, 0, "the day is complete only settleMs after midnight");
  clock.advance(one.settleMs);
  await s1.run();
  assert.deepEqual(mailed.map((m) => m.report.policies[0].successful), [1]);

  await late.flush(); // mx2 was cut from the database until now
  assert.match(errors.join("\n"), /1 sessions of 2026-03-01 were saved after its reports were taken; not reported/);
  await s1.run();
  assert.equal(mailed.length, 1);
});

test("a sender started just after midnight waits for the day's counts to be complete, then sends by itself", async () => {
  const clock = new ManualClock(Date.parse("2026-03-01T12:00:00Z"));
  const one = counts("mx1", clock);
  one.record({ policy: cPolicy });
  await one.flush();
  clock.advance(Date.parse("2026-03-02T00:01:00Z") - clock.now());
  const mailed: Mailed[] = [];
  const s = new TlsReportSender({
    aggregate: one, resolver, clock, from: "postmaster@a.test", hostname: "mx1.a.test", random: () => 0,
    identity: { organization: "Petrel Test", contact: "postmaster@a.test", submitter: "mx1.a.test" },
    submit: async (message, to) => {
      mailed.push({ to, report: reportsInMessage("m", message)[0] });
      return "Q1";
    },
  });
  s.start();
  await s.idle();
  assert.equal(mailed.length, 0);
  clock.advance(one.settleMs);
  await until(() => mailed.length > 0, "the run at the moment the day is complete");
  await s.close();
  assert.deepEqual(mailed.map((m) => m.to), [["tls@c.test"]]);
});

test("the database away at a write: the counts stay in memory and go in with the next write once it is back", { timeout: 60_000 }, async () => {
  const clock = new ManualClock(Date.parse("2026-03-01T10:00:00Z"));
  const errors: string[] = [];
  const one = counts("mx1", clock, { errors });
  one.record({ policy: sts });
  await server.stop();
  try {
    await one.flush();
    one.record({ policy: sts, failure: expired });
  } finally {
    await server.start();
  }
  assert.match(errors.join("\n"), /TLS-RPT counts for 2026-03-01 not saved \(kept for the next try\)/);
  // The pool may first hand out a connection the restart ended: that write fails and keeps the counts too.
  await until(async () => {
    const before = errors.length;
    await one.flush();
    return errors.length === before;
  }, "a write that succeeds");
  clock.advance(DAY);
  const b = await one.takeReport("2026-03-01", new Set(), () => "id");
  assert.deepEqual(b?.policies.map((p) => [p.successful, p.failed, p.failures.map((f) => [f.resultType, f.count])]), [[1, 1, [["certificate-expired", 1]]]]);
});
