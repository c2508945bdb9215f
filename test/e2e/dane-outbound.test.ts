import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { startUnbound, type TestUnbound } from "../support/unbound.ts";
import { portFreeOn } from "../support/ports.ts";
import { createTestCa, issue, tlsaData, type Issued, type TestCa } from "../support/test-ca.ts";
import { fate, startReceiver, startSender, submit, type Receiver } from "./fixtures/outbound-tls.ts";
import type { Running } from "./fixtures/mta-helpers.ts";
import type { DayCounts } from "../../src/tls-rpt/aggregate.ts";

/**
 * DANE as a sender (RFC 7672) between two real Petrels, with DNSSEC for real: zones signed
 * with ldns-signzone, served and validated by unbound on loopback, which Petrel's resolver
 * asks with dns.dnssec on. Usable TLSA records that match let the mail through over TLS;
 * records that do not match, or a server without STARTTLS, keep it queued — never plaintext,
 * never unverified. An unsigned zone's TLSA records, or a resolver whose AD bit is not trusted,
 * mean no DANE.
 */

let ca: TestCa;
let mxPair: Issued;
let other: Issued;
let rx: Receiver;
let bare: Receiver;
let unbound: TestUnbound;
let port: number;
const cleanups: (() => Promise<unknown>)[] = [];

const ZONES = ["dane", "bad", "ta", "plain", "unusable", "bogus", "nostls", "pkix"];

before(async () => {
  ca = await createTestCa();
  mxPair = await ca.issue(ZONES.map((z) => `mx.${z}.test`));
  other = await issue(["mx.dane.test"]);
  port = await portFreeOn(["127.0.0.1", "127.0.0.2"]);
  rx = await startReceiver({ hostname: "mx.dane.test", domains: ZONES.map((z) => `${z}.test`), pair: mxPair, port });
  // The same certificate on a server that offers no STARTTLS.
  bare = await startReceiver({ hostname: "mx.nostls.test", domains: ["nostls.test"], pair: mxPair, address: "127.0.0.2", port, hide: ["STARTTLS"] });
  const ee = tlsaData(mxPair.cert, 1, 1);
  const wrong = tlsaData(other.cert, 1, 1);
  const zone = (origin: string, tlsa: string, signed: boolean, mxAddress = "127.0.0.1") => ({
    origin: `${origin}.test`, signed,
    records: [`@ MX 10 mx.${origin}.test.`, `mx A ${mxAddress}`, `_${port}._tcp.mx TLSA ${tlsa}`],
  });
  unbound = await startUnbound([
    zone("dane", `3 1 1 ${ee}`, true),
    zone("bad", `3 1 1 ${wrong}`, true),
    zone("ta", `2 0 1 ${tlsaData(ca.cert, 0, 1)}`, true),
    zone("plain", `3 1 1 ${wrong}`, false),
    zone("unusable", `1 1 1 ${ee}`, true),
    { ...zone("bogus", `3 1 1 ${ee}`, true), tamper: (text: string) => text.replace(/(TLSA\s+3 1 1 )([0-9a-f])/i, (_m, p: string, c: string) => `${p}${c === "0" ? "1" : "0"}`) },
    zone("nostls", `3 1 1 ${ee}`, true, "127.0.0.2"),
    // Signed, without TLSA records: the MX name is authenticated, the certificate is PKIX's business.
    { origin: "pkix.test", signed: true, records: ["@ MX 10 mx.pkix.test.", "mx A 127.0.0.1"] },
  ]);
});
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await rx?.stop();
  await bare?.stop();
  await unbound?.close();
});

async function sender(dnssec = true, trustTestCa = false): Promise<Running> {
  const tx = await startSender({ dns: unbound.server, dnssec, port, ...(trustTestCa ? { options: { ca: ca.cert } } : {}) });
  cleanups.push(async () => {
    await tx.stop();
    await rm(tx.dir, { recursive: true, force: true });
  });
  return tx;
}

async function arrivedFor(domain: string, at: Receiver = rx): Promise<number> {
  return (await at.received()).filter((m) => m.envelope.recipients.some((r) => r.address.endsWith(`@${domain}`))).length;
}

async function counts(tx: Running): Promise<DayCounts> {
  await tx.stop();
  return JSON.parse(await readFile(join(tx.dir, "tls-rpt", `${new Date().toISOString().slice(0, 10)}.json`), "utf8")) as DayCounts;
}

test("a DNSSEC-validated DANE-EE record that matches: delivered over TLS, counted as a tlsa success for the MX host", { timeout: 60_000 }, async () => {
  const tx = await sender();
  const id = await submit(tx, "postmaster@dane.test");
  assert.deepEqual(await fate(tx, id), { status: "delivered" }, unbound.log());
  const [got] = (await rx.received()).filter((m) => m.envelope.recipients[0].address === "postmaster@dane.test");
  assert.equal(got.envelope.client.protocol, "ESMTPS");
  const day = await counts(tx);
  assert.deepEqual(day.domains["mx.dane.test"].map((c) => [c.policy.type, c.successful, c.failed]), [["tlsa", 1, 0]]);
  const policy = day.domains["mx.dane.test"][0].policy;
  assert.deepEqual(policy.type === "tlsa" && policy.lines, [`3 1 1 ${tlsaData(mxPair.cert, 1, 1)}`]);
});

test("DANE-TA: the test CA named by a validated 2 0 1 record authenticates the MX", { timeout: 60_000 }, async () => {
  const tx = await sender();
  const id = await submit(tx, "postmaster@ta.test");
  assert.deepEqual(await fate(tx, id), { status: "delivered" });
  assert.equal(await arrivedFor("ta.test"), 1);
});

test("a validated TLSA record that does not match: deferred, nothing sent (no fallback to unverified TLS or plaintext)", { timeout: 60_000 }, async () => {
  const tx = await sender();
  const id = await submit(tx, "postmaster@bad.test");
  const f = await fate(tx, id);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /^4\.7\.5 .*DANE authentication of .* failed: no TLSA record matches/);
  assert.equal(await arrivedFor("bad.test"), 0);
  const day = await counts(tx);
  assert.equal(day.domains["mx.bad.test"][0].failures[0].resultType, "validation-failure");
});

test("usable TLSA records and a server without STARTTLS: deferred, never plaintext", { timeout: 60_000 }, async () => {
  const tx = await sender();
  const id = await submit(tx, "postmaster@nostls.test");
  const f = await fate(tx, id);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /does not offer STARTTLS/);
  assert.equal(await arrivedFor("nostls.test", bare), 0);
});

test("an unsigned zone's TLSA records are no DANE: delivered opportunistically", { timeout: 60_000 }, async () => {
  const tx = await sender();
  const id = await submit(tx, "postmaster@plain.test");
  assert.deepEqual(await fate(tx, id), { status: "delivered" });
  assert.equal(await arrivedFor("plain.test"), 1);
});

test("without dns.dnssec the AD bit is not believed: the mismatching records of a signed zone are not used", { timeout: 60_000 }, async () => {
  const before = await arrivedFor("bad.test");
  const tx = await sender(false);
  const id = await submit(tx, "postmaster@bad.test");
  assert.deepEqual(await fate(tx, id), { status: "delivered" });
  assert.equal(await arrivedFor("bad.test"), before + 1);
});

test("only unusable (PKIX-EE) records: TLS is still mandatory, unauthenticated; the session is reported tlsa-invalid", { timeout: 60_000 }, async () => {
  const tx = await sender();
  const id = await submit(tx, "postmaster@unusable.test");
  assert.deepEqual(await fate(tx, id), { status: "delivered" });
  const [got] = (await rx.received()).filter((m) => m.envelope.recipients[0].address === "postmaster@unusable.test");
  assert.equal(got.envelope.client.protocol, "ESMTPS");
  const day = await counts(tx);
  assert.equal(day.domains["mx.unusable.test"][0].failures[0].resultType, "tlsa-invalid");
});

test("DNSSEC-bogus TLSA records (SERVFAIL from the validator): the MX host is not used", { timeout: 60_000 }, async () => {
  const tx = await sender();
  const id = await submit(tx, "postmaster@bogus.test");
  const f = await fate(tx, id);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /^4\.7\.5 TLSA lookup for _\d+\._tcp\.mx\.bogus\.test failed \(.*SERVFAIL/);
  assert.equal(await arrivedFor("bogus.test"), 0);
  const day = await counts(tx);
  assert.equal(day.domains["mx.bogus.test"][0].failures[0].resultType, "dnssec-invalid");
});

test("REQUIRETLS over DANE: delivered, with REQUIRETLS passed on", { timeout: 60_000 }, async () => {
  const tx = await sender();
  const id = await submit(tx, "postmaster@dane.test", { requireTls: true, subject: "requiretls over dane" });
  assert.deepEqual(await fate(tx, id), { status: "delivered" });
  const got = (await rx.received()).find((m) => m.body.includes("requiretls over dane"));
  assert.equal(got?.envelope.requireTls, true);
});

test("REQUIRETLS with a DNSSEC-validated MX and no TLSA: the certificate must be valid for the MX name (PKIX)", { timeout: 60_000 }, async () => {
  const trusted = await sender(true, true);
  const id = await submit(trusted, "postmaster@pkix.test", { requireTls: true });
  assert.deepEqual(await fate(trusted, id), { status: "delivered" });
  assert.equal(await arrivedFor("pkix.test"), 1);
  // The same server, the test CA not trusted: the certificate does not verify, so nothing goes.
  const untrusting = await sender(true, false);
  const id2 = await submit(untrusting, "postmaster@pkix.test", { requireTls: true });
  const f = await fate(untrusting, id2);
  assert.equal(f.status, "deferred");
  assert.match((f as { lastError: string }).lastError, /^4\.7\.5 .*TLS failed/);
  assert.equal(await arrivedFor("pkix.test"), 1);
});
