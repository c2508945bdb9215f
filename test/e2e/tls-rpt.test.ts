import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { policyText, startPolicyServer, type PolicyServer } from "../support/policy-server.ts";
import { createTestCa, writePair, type TestCa } from "../support/test-ca.ts";
import { until } from "../support/until.ts";
import { io, start, type Running } from "./fixtures/mta-helpers.ts";
import { startSender, submit, fate } from "./fixtures/outbound-tls.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { RESULT_TYPES } from "../../src/tls-rpt/session-result.ts";
import { tlsrptCommand } from "../../src/cli/tlsrpt-command.ts";

/**
 * TLS reporting (RFC 8460) end to end: a sending Petrel counts its TLS sessions, and after the
 * UTC day ends (its clock is injected: nobody waits a day) mails the report to the `rua` of
 * far.test's `_smtp._tls` record — to a real receiving Petrel, into postmaster@far.test's
 * Maildir, where `petrel tlsrpt summary` reads it — and posts ok.test's report over HTTPS.
 */

let ca: TestCa;
let dns: TestDnsServer;
let web: PolicyServer;
let rx: Running;
let certDir: string;
let collector: https.Server;
const posted: { path: string; type: string | undefined; body: Buffer }[] = [];

before(async () => {
  ca = await createTestCa();
  certDir = await mkdtemp(join(tmpdir(), "petrel-tlsrpt-"));
  const mx = await writePair(certDir, "mx", await ca.issue(["mx.far.test", "mx.ok.test"]));
  rx = await start({ hostname: "mx.far.test", domains: ["far.test", "ok.test", "quiet.test", "example.test"], tls: mx });
  web = await startPolicyServer(await ca.issue(["mta-sts.far.test"]));
  // far.test's policy is in testing mode and does not name its MX: each session fails it, the mail still goes.
  web.serve("mta-sts.far.test", { body: policyText("testing", ["mx.elsewhere.test"]) });
  const collectorPair = await ca.issue(["reports.ok.test"]);
  collector = https.createServer({ cert: collectorPair.cert, key: collectorPair.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      posted.push({ path: req.url ?? "", type: req.headers["content-type"], body: Buffer.concat(chunks) });
      res.writeHead(201).end();
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
  const collectorPort = (collector.address() as AddressInfo).port;
  dns = await startDnsServer({
    "far.test": { MX: [[10, "mx.far.test"]] },
    "mx.far.test": { A: ["127.0.0.1"] },
    "_mta-sts.far.test": { TXT: ["v=STSv1; id=1;"] },
    "mta-sts.far.test": { A: ["127.0.0.1"] },
    "_smtp._tls.far.test": { TXT: ["v=TLSRPTv1; rua=mailto:postmaster@far.test"] },
    "ok.test": { MX: [[10, "mx.ok.test"]] },
    "mx.ok.test": { A: ["127.0.0.1"] },
    "_smtp._tls.ok.test": { TXT: [`v=TLSRPTv1;rua=https://reports.ok.test:${collectorPort}/v1/tlsrpt`] },
    "reports.ok.test": { A: ["127.0.0.1"] },
    // quiet.test publishes no _smtp._tls record: its sessions are counted, nobody is sent a report.
    "quiet.test": { MX: [[10, "mx.far.test"]] },
  });
});
after(async () => {
  await rx?.stop();
  await rm(rx?.dir ?? "/nonexistent", { recursive: true, force: true });
  await web?.close();
  await dns?.close();
  await new Promise<void>((resolve) => (collector ? collector.close(() => resolve()) : resolve()));
  await rm(certDir, { recursive: true, force: true });
});

/** The fields RFC 8460 §4.4 gives a report, with their types; returns the report for further checks. */
function checkSchema(json: unknown): Record<string, any> {
  const r = json as Record<string, any>;
  assert.equal(typeof r["organization-name"], "string");
  assert.match(r["date-range"]["start-datetime"], /^\d{4}-\d{2}-\d{2}T00:00:00Z$/);
  assert.match(r["date-range"]["end-datetime"], /^\d{4}-\d{2}-\d{2}T23:59:59Z$/);
  assert.equal(typeof r["contact-info"], "string");
  assert.equal(typeof r["report-id"], "string");
  assert.ok(Array.isArray(r.policies) && r.policies.length > 0);
  for (const p of r.policies) {
    assert.ok(["sts", "tlsa", "no-policy-found"].includes(p.policy["policy-type"]));
    assert.equal(typeof p.policy["policy-domain"], "string");
    if (p.policy["policy-string"] !== undefined) assert.ok(p.policy["policy-string"].every((s: unknown) => typeof s === "string"));
    for (const k of ["total-successful-session-count", "total-failure-session-count"]) assert.ok(Number.isInteger(p.summary[k]) && p.summary[k] >= 0, k);
    let failed = 0;
    for (const f of p["failure-details"] ?? []) {
      assert.ok((RESULT_TYPES as readonly string[]).includes(f["result-type"]), f["result-type"]);
      assert.ok(Number.isInteger(f["failed-session-count"]) && f["failed-session-count"] > 0);
      failed += f["failed-session-count"];
    }
    assert.equal(failed, p.summary["total-failure-session-count"]);
  }
  return r;
}

test("the day's sessions are reported after midnight UTC: by mail in the RFC's format, and over HTTPS; the summary command reads the mail", { timeout: 60_000 }, async () => {
  const clock = new ManualClock(Date.now());
  const tx = await startSender({
    dns: dns.server, port: rx.mx,
    extra: { hostname: "mx.example.test", tlsRpt: { organization: "Example Sender", contact: "tls-reports@example.test" } },
    options: { ca: ca.cert, mtaStsPort: web.port, clock },
  });
  try {
    const day = new Date(clock.now()).toISOString().slice(0, 10);
    for (const to of ["postmaster@far.test", "postmaster@far.test", "postmaster@ok.test", "postmaster@quiet.test"]) {
      assert.deepEqual(await fate(tx, await submit(tx, to)), { status: "delivered" }, to);
    }
    const before = (await rx.maildir("postmaster@far.test")).length;
    assert.equal(before, 2);

    // Past the next midnight and the first hour after it (when the run happens).
    const midnight = Date.parse(`${day}T00:00:00Z`) + 86_400_000;
    clock.advance(midnight - clock.now() + 3_600_000 + 60_000);

    const report = await until(async () => (await rx.maildir("postmaster@far.test")).find((m) => m.includes("TLS-Report-Domain")), "the report mail", { ms: 20_000 });
    const header = report.slice(0, report.indexOf("\n\n"));
    assert.match(header, /^TLS-Report-Domain: far\.test$/m);
    assert.match(header, /^TLS-Report-Submitter: mx\.example\.test$/m);
    assert.match(header, /^Subject: Report Domain: far\.test Submitter: mx\.example\.test Report-ID: <[^>]+>$/m);
    assert.match(header, /^Content-Type: multipart\/report; report-type="tlsrpt"; boundary="[^"]+"$/m);
    assert.match(header, /^TLS-Required: No$/m);
    assert.match(header, /^Return-Path: <>$/m);
    const attachment = /Content-Type: application\/tlsrpt\+gzip\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="mx\.example\.test!far\.test!(\d+)!(\d+)\.json\.gz"\n\n([A-Za-z0-9+/=\n]+)\n--/.exec(report);
    assert.ok(attachment, report);
    assert.equal(Number(attachment[1]) * 1000, Date.parse(`${day}T00:00:00Z`));
    assert.equal(Number(attachment[2]) - Number(attachment[1]), 86_399);
    const json = checkSchema(JSON.parse(gunzipSync(Buffer.from(attachment[3].replace(/\n/g, ""), "base64")).toString("utf8")));
    assert.equal(json["organization-name"], "Example Sender");
    assert.equal(json["contact-info"], "tls-reports@example.test");
    assert.equal(json["date-range"]["start-datetime"], `${day}T00:00:00Z`);
    assert.deepEqual(json.policies, [{
      policy: {
        "policy-type": "sts",
        "policy-string": ["version: STSv1", "mode: testing", "mx: mx.elsewhere.test", "max_age: 86400"],
        "policy-domain": "far.test",
        "mx-host": ["mx.elsewhere.test"],
      },
      // Two messages, one TLS session: the second reused the first's connection.
      summary: { "total-successful-session-count": 0, "total-failure-session-count": 1 },
      "failure-details": [{
        "result-type": "validation-failure", "sending-mta-ip": "127.0.0.1", "receiving-mx-hostname": "mx.far.test",
        "receiving-ip": "127.0.0.1", "failed-session-count": 1, "failure-reason-code": "mx-not-in-policy",
      }],
    }]);

    const post = await until(() => posted.find((p) => p.path === "/v1/tlsrpt"), "the HTTPS report");
    assert.equal(post.type, "application/tlsrpt+gzip");
    const okReport = checkSchema(JSON.parse(gunzipSync(post.body).toString("utf8")));
    assert.deepEqual(okReport.policies.map((p: any) => [p.policy["policy-type"], p.policy["policy-domain"], p.summary["total-successful-session-count"]]), [["no-policy-found", "ok.test", 1]]);

    // The report mail itself was not counted for a later report (it carries TLS-Required: No), and the day is done.
    await tx.mta.queue.idle();
    assert.deepEqual((await readdir(join(tx.dir, "tls-rpt"))).filter((f) => f.startsWith(day)), []);

    const out = io();
    assert.equal(await tlsrptCommand(["summary", "--config", rx.configPath], out.io), 0, out.err());
    assert.match(out.out(), /^TLS reports in postmaster@example\.test, postmaster@far\.test, postmaster@ok\.test, postmaster@quiet\.test: 1\n/);
    assert.match(out.out(), new RegExp(`${day}T00:00:00Z to ${day}T23:59:59Z  from Example Sender <tls-reports@example\\.test>`));
    assert.match(out.out(), /  sts far\.test: 0 successful, 1 failed\n    validation-failure × 1  mx\.far\.test 127\.0\.0\.1  \(mx-not-in-policy\)/);
    assert.match(out.out(), /Totals by policy domain:\n  far\.test: 0 successful, 1 failed in 1 report\(s\) — validation-failure 1/);
    const json2 = io();
    assert.equal(await tlsrptCommand(["summary", "--config", rx.configPath, "--json"], json2.io), 0);
    assert.deepEqual(JSON.parse(json2.out()).totals, [{ domain: "far.test", reports: 1, successful: 0, failed: 1, failures: { "validation-failure": 1 } }]);
  } finally {
    await tx.stop();
    await rm(tx.dir, { recursive: true, force: true });
  }
});
