import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { policyText, startPolicyServer, type PolicyServer } from "../support/policy-server.ts";
import { createTestCa, issue, type Issued, type TestCa } from "../support/test-ca.ts";
import { fate, startReceiver, startSender, submit, type Receiver } from "./fixtures/outbound-tls.ts";
import type { Running } from "./fixtures/mta-helpers.ts";
import type { DayCounts } from "../../src/tls-rpt/aggregate.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { until } from "../support/until.ts";

/**
 * MTA-STS as a sender (RFC 8461) between two real Petrels: the policy of far.test comes from a
 * loopback HTTPS policy host with a certificate of the test CA, the MX records from the
 * loopback DNS server. Enforce delivers only over verified TLS to the hosts the policy names
 * and otherwise defers — never plaintext; testing delivers and reports.
 */

let ca: TestCa;
let mxPair: Issued;
let web: PolicyServer;
let dns: TestDnsServer;
const cleanups: (() => Promise<unknown>)[] = [];

before(async () => {
  ca = await createTestCa();
  mxPair = await ca.issue(["mx.far.test"]);
  web = await startPolicyServer(await ca.issue(["mta-sts.far.test"]));
  dns = await startDnsServer({});
});
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await web?.close();
  await dns?.close();
});

/** far.test: its MX (`mx`, default mx.far.test → 127.0.0.1), its _mta-sts id, and the policy host. */
function publish(o: { mx?: string; id?: string } = {}): void {
  const mx = o.mx ?? "mx.far.test";
  dns.setZone({
    "far.test": { MX: [[10, mx]] },
    [mx]: { A: ["127.0.0.1"] },
    ...(o.id !== undefined ? { "_mta-sts.far.test": { TXT: [`v=STSv1; id=${o.id};`] } } : {}),
    "mta-sts.far.test": { A: ["127.0.0.1"] },
  });
}

async function pair(o: { hide?: string[]; cert?: Issued; senderDir?: string } = {}): Promise<{ rx: Receiver; tx: Running }> {
  const rx = await startReceiver({ hostname: "mx.far.test", domains: ["far.test"], pair: o.cert ?? mxPair, ...(o.hide ? { hide: o.hide } : {}) });
  cleanups.push(() => rx.stop());
  const tx = await startSender({ dns: dns.server, port: rx.port, ...(o.senderDir ? { dir: o.senderDir } : {}), options: { ca: ca.cert, mtaStsPort: web.port } });
  cleanups.push(async () => {
    await tx.stop();
    await rm(tx.dir, { recursive: true, force: true });
  });
  return { rx, tx };
}

async function counts(tx: Running): Promise<DayCounts> {
  await tx.stop();
  const day = new Date().toISOString().slice(0, 10);
  return JSON.parse(await readFile(join(tx.dir, "tls-rpt", `${day}.json`), "utf8")) as DayCounts;
}

test("enforce, MX named by the policy, valid certificate: delivered over verified TLS", async () => {
  publish({ id: "e1" });
  web.serve("mta-sts.far.test", { body: policyText("enforce", ["mx.far.test"]) });
  const { rx, tx } = await pair();
  const id = await submit(tx, "postmaster@far.test");
  assert.deepEqual(await fate(tx, id), { status: "delivered" });
  const [got] = await rx.received();
  assert.equal(got.envelope.client.protocol, "ESMTPS");
  assert.ok(got.envelope.client.tls, "the session was TLS");
  assert.ok(web.requests.includes("mta-sts.far.test"), "the policy was fetched");
  const day = await counts(tx);
  assert.deepEqual(day.domains["far.test"].map((c) => [c.policy.type, c.successful, c.failed]), [["sts", 1, 0]]);
});

test("enforce, MX not named by the policy: deferred, nothing sent", async () => {
  publish({ id: "e2" });
  web.serve("mta-sts.far.test", { body: policyText("enforce", ["mx.elsewhere.test"]) });
  const { rx, tx } = await pair();
  const id = await submit(tx, "postmaster@far.test");
  const f = await fate(tx, id);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /^4\.7\.5 mx\.far\.test is not an MX host the MTA-STS policy of far\.test allows/);
  assert.deepEqual(await rx.received(), []);
});

test("enforce, a receiving server without STARTTLS: deferred, never plaintext", async () => {
  publish({ id: "e3" });
  web.serve("mta-sts.far.test", { body: policyText("enforce", ["mx.far.test"]) });
  const { rx, tx } = await pair({ hide: ["STARTTLS"] });
  const id = await submit(tx, "postmaster@far.test");
  const f = await fate(tx, id);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /^4\.7\.5 .*does not offer STARTTLS/);
  assert.deepEqual(await rx.received(), []);
  const day = await counts(tx);
  assert.equal(day.domains["far.test"][0].failures[0].resultType, "starttls-not-supported");
});

test("enforce, the MX presents an expired certificate: deferred", async () => {
  publish({ id: "e4" });
  web.serve("mta-sts.far.test", { body: policyText("enforce", ["mx.far.test"]) });
  const { rx, tx } = await pair({ cert: await ca.issue(["mx.far.test"], { expired: true }) });
  const id = await submit(tx, "postmaster@far.test");
  const f = await fate(tx, id);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /^4\.7\.5 .*certificate has expired/i);
  assert.deepEqual(await rx.received(), []);
  const day = await counts(tx);
  assert.equal(day.domains["far.test"][0].failures[0].resultType, "certificate-expired");
});

test("testing: an MX outside the policy with an untrusted certificate still gets the mail; both failures are counted for the report", async () => {
  publish({ id: "t1", mx: "mx2.far.test" });
  web.serve("mta-sts.far.test", { body: policyText("testing", ["mx.far.test"]) });
  const { rx, tx } = await pair({ cert: await issue(["mx2.far.test"]) });
  const id = await submit(tx, "postmaster@far.test");
  assert.deepEqual(await fate(tx, id), { status: "delivered" });
  assert.equal((await rx.received()).length, 1);
  const day = await counts(tx);
  const [c] = day.domains["far.test"];
  assert.equal(c.policy.type, "sts");
  assert.equal(c.failed, 1);
  assert.deepEqual(c.failures.map((f) => [f.resultType, f.receivingMxHostname, f.receivingIp, f.failureReasonCode]), [["validation-failure", "mx2.far.test", "127.0.0.1", "mx-not-in-policy"]]);
});

test("a policy host with an expired or untrusted certificate gives no policy: delivered opportunistically, reported as sts-webpki-invalid", async () => {
  for (const [what, cert] of [["expired", await ca.issue(["mta-sts.far.test"], { expired: true })], ["untrusted", await issue(["mta-sts.far.test"])]] as const) {
    publish({ id: `w${what}`, mx: "mx.far.test" });
    web.serve("mta-sts.far.test", { body: policyText("enforce", ["mx.elsewhere.test"]) });
    web.setCertificate(cert);
    try {
      const { rx, tx } = await pair();
      const id = await submit(tx, "postmaster@far.test");
      assert.deepEqual(await fate(tx, id), { status: "delivered" }, what);
      assert.equal((await rx.received()).length, 1, what);
      const day = await counts(tx);
      assert.equal(day.domains["far.test"][0].failures[0]?.resultType, "sts-webpki-invalid", `${what}: ${JSON.stringify(day)}`);
    } finally {
      web.setCertificate(await ca.issue(["mta-sts.far.test"]));
    }
  }
});

test("the policy is cached across a restart: with the policy host down afterwards, enforce still holds", async () => {
  publish({ id: "r1" });
  web.serve("mta-sts.far.test", { body: policyText("enforce", ["mx.far.test"]) });
  const first = await pair();
  const id = await submit(first.tx, "postmaster@far.test");
  assert.deepEqual(await fate(first.tx, id), { status: "delivered" });
  await first.tx.stop();
  // The policy host is gone, and the MX now points at a host the cached policy does not allow.
  web.serve("mta-sts.far.test", { status: 503, body: "down" });
  publish({ id: "r2", mx: "mx.evil.test" });
  const tx = await startSender({ dns: dns.server, port: first.rx.port, dir: first.tx.dir, options: { ca: ca.cert, mtaStsPort: web.port } });
  cleanups.push(() => tx.stop());
  const id2 = await submit(tx, "postmaster@far.test");
  const f = await fate(tx, id2);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /mx\.evil\.test is not an MX host the MTA-STS policy of far\.test allows/);
  assert.equal((await first.rx.received()).length, 1, "only the first message arrived");
});

test("REQUIRETLS over an enforced MTA-STS policy: delivered with REQUIRETLS passed on", async () => {
  publish({ id: "q1" });
  web.serve("mta-sts.far.test", { body: policyText("enforce", ["mx.far.test"]) });
  const { rx, tx } = await pair();
  const id = await submit(tx, "postmaster@far.test", { requireTls: true });
  assert.deepEqual(await fate(tx, id), { status: "delivered" });
  const [got] = await rx.received();
  assert.equal(got.envelope.requireTls, true, "MAIL FROM carried REQUIRETLS");
});

test("REQUIRETLS to a server that does not offer it: deferred 4.7.30, nothing sent", async () => {
  publish({ id: "q2" });
  web.serve("mta-sts.far.test", { body: policyText("enforce", ["mx.far.test"]) });
  const { rx, tx } = await pair({ hide: ["REQUIRETLS"] });
  const id = await submit(tx, "postmaster@far.test", { requireTls: true });
  const f = await fate(tx, id);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /^4\.7\.30 REQUIRETLS: mx\.far\.test\[127\.0\.0\.1\] does not offer the REQUIRETLS extension/);
  assert.deepEqual(await rx.received(), []);
});

test("REQUIRETLS with neither DNSSEC nor MTA-STS: deferred 4.7.30 through the retries, then bounced 5.7.30 with the headers only", async () => {
  publish({});
  const clock = new ManualClock(Date.now());
  const rx = await startReceiver({ hostname: "mx.far.test", domains: ["far.test"], pair: mxPair });
  cleanups.push(() => rx.stop());
  const tx = await startSender({
    dns: dns.server, port: rx.port, options: { ca: ca.cert, mtaStsPort: web.port, clock },
    extra: { queue: { lifetime: "2h", minBackoff: "10m", maxBackoff: "30m", delayWarning: 0 } },
  });
  cleanups.push(() => tx.stop());
  const id = await submit(tx, "postmaster@far.test", { requireTls: true, subject: "secret plans" });
  const f = await fate(tx, id);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /^4\.7\.30 REQUIRETLS: the name of mx\.far\.test cannot be authenticated/);
  for (let i = 0; i < 12 && (await tx.maildir("alice@example.test")).length === 0; i++) {
    clock.advance(15 * 60_000);
    await tx.mta.queue.idle();
  }
  const dsn = await until(async () => (await tx.maildir("alice@example.test")).find((m) => /Action: failed/.test(m)), "the bounce");
  assert.match(dsn, /Status: 5\.7\.30/);
  assert.match(dsn, /Diagnostic-Code: x-petrel; message expired in the queue; last error:\n REQUIRETLS: the name of mx\.far\.test cannot be authenticated/);
  assert.match(dsn, /Content-Type: text\/rfc822-headers/);
  assert.doesNotMatch(dsn, /^hello$/m, "the body of a REQUIRETLS message is not returned");
  assert.deepEqual(await rx.received(), []);
});
