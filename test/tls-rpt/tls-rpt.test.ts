import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../src/mail/clock.ts";
import { TlsRptAggregate } from "../../src/tls-rpt/aggregate.ts";
import { buildReport, parseTlsRptRecord } from "../../src/tls-rpt/report.ts";
import { composeReportMail } from "../../src/tls-rpt/report-mail.ts";
import { reportsInMessage } from "../../src/tls-rpt/inbound.ts";
import { TlsReportSender } from "../../src/tls-rpt/report-sender.ts";
import { createResolver } from "../../src/dns/resolver.ts";
import { startDnsServer } from "../support/dns-server.ts";
import type { TlsSessionResult } from "../../src/tls-rpt/session-result.ts";

const identity = { organization: "Petrel Test", contact: "postmaster@mx.a.test", submitter: "mx.a.test" };
const sts: TlsSessionResult["policy"] = { type: "sts", domain: "b.test", lines: ["version: STSv1", "mode: enforce", "mx: mx.b.test", "max_age: 86400"], mxHost: ["mx.b.test"] };
const DAY = 86_400_000;

async function tempDir(t: import("node:test").TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-tlsrpt-unit-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("_smtp._tls records (RFC 8460 §3): exactly one v=TLSRPTv1 record; mailto and https rua, decoded", () => {
  assert.deepEqual(parseTlsRptRecord(["v=TLSRPTv1; rua=mailto:tls%2Breports@b.test,https://reports.b.test/v1"]), { mailto: ["tls+reports@b.test"], https: ["https://reports.b.test/v1"] });
  assert.deepEqual(parseTlsRptRecord(["v=spf1 -all", "v=TLSRPTv1;rua=mailto:r@b.test?subject=x"]), { mailto: ["r@b.test"], https: [] });
  assert.equal(parseTlsRptRecord(["v=TLSRPTv1; rua=mailto:a@b.test", "v=TLSRPTv1; rua=mailto:c@b.test"]), undefined, "two records: none");
  assert.equal(parseTlsRptRecord(["v=TLSRPTv1; rua=ftp://x.test/"]), undefined, "no usable URI");
  assert.equal(parseTlsRptRecord(["v=TLSRPTv2; rua=mailto:a@b.test"]), undefined);
  assert.equal(parseTlsRptRecord([]), undefined);
});

test("counts are kept per UTC day on disk: a restart goes on counting today; a finished day is offered for sending", async (t) => {
  const dir = await tempDir(t);
  const clock = new ManualClock(Date.parse("2026-03-01T10:00:00Z"));
  const a = new TlsRptAggregate({ dir, clock });
  await a.start();
  a.record({ policy: sts });
  a.record({ policy: sts, failure: { resultType: "certificate-expired", receivingMxHostname: "mx.b.test", receivingIp: "192.0.2.1" } });
  a.record({ policy: sts, failure: { resultType: "certificate-expired", receivingMxHostname: "mx.b.test", receivingIp: "192.0.2.1" } });
  await a.close();
  assert.deepEqual(await readdir(dir), ["2026-03-01.json"]);

  const b = new TlsRptAggregate({ dir, clock });
  await b.start();
  b.record({ policy: { type: "no-policy-found", domain: "c.test" } });
  clock.advance(DAY);
  assert.deepEqual(await b.finishedDays(), ["2026-03-01"]);
  const day = await b.day("2026-03-01");
  assert.deepEqual(day?.domains["b.test"].map((c) => [c.successful, c.failed, c.failures.map((f) => [f.resultType, f.count])]), [[1, 2, [["certificate-expired", 2]]]]);
  assert.equal(day?.domains["c.test"][0].successful, 1);
  await b.remove("2026-03-01");
  await b.close();
  assert.deepEqual(await readdir(dir), []);
});

test("the report's JSON follows RFC 8460 §4.4 and a mailed report reads back as received", () => {
  const report = buildReport(identity, "2026-03-01", "b.test", [{
    policy: sts, successful: 5, failed: 1,
    failures: [{ resultType: "starttls-not-supported", receivingMxHostname: "mx.b.test", receivingIp: "192.0.2.1", sendingMtaIp: "198.51.100.1", count: 1 }],
  }]);
  assert.deepEqual(report, {
    "organization-name": "Petrel Test",
    "date-range": { "start-datetime": "2026-03-01T00:00:00Z", "end-datetime": "2026-03-01T23:59:59Z" },
    "contact-info": "postmaster@mx.a.test",
    "report-id": "2026-03-01.b.test@mx.a.test",
    policies: [{
      policy: { "policy-type": "sts", "policy-string": sts.type === "sts" ? sts.lines : [], "policy-domain": "b.test", "mx-host": ["mx.b.test"] },
      summary: { "total-successful-session-count": 5, "total-failure-session-count": 1 },
      "failure-details": [{ "result-type": "starttls-not-supported", "sending-mta-ip": "198.51.100.1", "receiving-mx-hostname": "mx.b.test", "receiving-ip": "192.0.2.1", "failed-session-count": 1 }],
    }],
  });
  const mail = composeReportMail({ identity, day: "2026-03-01", policyDomain: "b.test", report, from: "postmaster@mx.a.test", to: ["tls@b.test"], hostname: "mx.a.test", now: new Date("2026-03-02T00:30:00Z") });
  assert.doesNotMatch(mail.toString(), /[^\r]\n/, "CRLF line ends only");
  const [got] = reportsInMessage("m1", mail);
  assert.deepEqual(got, {
    file: "m1", organization: "Petrel Test", contact: "postmaster@mx.a.test", reportId: "2026-03-01.b.test@mx.a.test",
    start: "2026-03-01T00:00:00Z", end: "2026-03-01T23:59:59Z",
    policies: [{ type: "sts", domain: "b.test", strings: sts.type === "sts" ? [...sts.lines] : [], successful: 5, failed: 1, failures: [{ resultType: "starttls-not-supported", count: 1, mx: "mx.b.test", ip: "192.0.2.1" }] }],
  });
});

test("reports from other senders: a plain JSON attachment (LF line ends) is read; a message without a report is not", () => {
  const json = JSON.stringify({ "organization-name": "Other", "date-range": { "start-datetime": "2026-03-01T00:00:00Z", "end-datetime": "2026-03-01T23:59:59Z" }, "contact-info": "x@o.test", "report-id": "r1", policies: [{ policy: { "policy-type": "no-policy-found", "policy-domain": "a.test" }, summary: { "total-successful-session-count": 7, "total-failure-session-count": 0 } }] });
  const msg = [
    "From: reports@o.test", "Subject: Report Domain: a.test Submitter: o.test Report-ID: <r1>", "MIME-Version: 1.0",
    'Content-Type: multipart/report; report-type="tlsrpt"; boundary=XYZ', "", "--XYZ", "Content-Type: text/plain", "", "hello", "--XYZ",
    "Content-Type: application/tlsrpt+json", 'Content-Disposition: attachment; filename="o.test!a.test!1!2.json"', "", json, "--XYZ--", "",
  ].join("\n");
  const [r] = reportsInMessage("m2", Buffer.from(msg));
  assert.equal(r.organization, "Other");
  assert.equal(r.policies[0].successful, 7);
  assert.deepEqual(reportsInMessage("m3", Buffer.from("Subject: hi\r\n\r\nnot a report\r\n")), []);
});

test("a day whose _smtp._tls lookup fails is kept and sent at the next run; a domain without the record gets nothing", async (t) => {
  const dir = await tempDir(t);
  const dns = await startDnsServer({ "_smtp._tls.b.test": { TXT: ["v=TLSRPTv1; rua=mailto:tls@b.test"] } });
  t.after(() => dns.close());
  const resolver = createResolver({ servers: [dns.server], cacheSize: 0, tries: 1, timeout: 500 });
  t.after(() => resolver.close());
  const clock = new ManualClock(Date.parse("2026-03-01T10:00:00Z"));
  const aggregate = new TlsRptAggregate({ dir, clock });
  await aggregate.start();
  aggregate.record({ policy: sts });
  aggregate.record({ policy: { type: "no-policy-found", domain: "quiet.test" } });
  const sent: { to: readonly string[]; message: string }[] = [];
  const sender = new TlsReportSender({
    aggregate, resolver, clock, identity, from: "postmaster@mx.a.test", hostname: "mx.a.test", random: () => 0.5,
    submit: async (message, to) => {
      sent.push({ to, message: message.toString() });
      return `Q${sent.length}`;
    },
  });
  t.after(() => sender.close());
  sender.start();
  dns.setBehaviour("_smtp._tls.b.test", "servfail");
  clock.advance(DAY); // past 00:30 the next day
  await sender.idle();
  assert.equal(sent.length, 0);
  assert.deepEqual(await readdir(dir), ["2026-03-01.json"], "kept for the next run");

  dns.setBehaviour("_smtp._tls.b.test", undefined);
  clock.advance(DAY);
  await sender.idle();
  assert.deepEqual(sent.map((s) => s.to), [["tls@b.test"]]);
  assert.match(sent[0].message, /^TLS-Report-Domain: b\.test\r$/m);
  assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith("2026-03-01")), []);
  await aggregate.close();
});
