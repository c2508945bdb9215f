import { test } from "node:test";
import assert from "node:assert/strict";
import { createResolver } from "../../src/dns/resolver.ts";
import { startDnsServer, type Zone } from "../support/dns-server.ts";
import { startUnbound } from "../support/unbound.ts";

/**
 * How the resolver reads DNSSEC validation: the DO bit goes out only with `dnssec`, the AD bit
 * is believed only then, and an answer is authentic only when every response it was built from
 * was. First against the loopback test server (which sets AD as told), then against a real
 * validating unbound serving a zone signed with ldns-signzone.
 */

const HEX = "aa".repeat(32);
const zone: Zone = {
  "secure.test": { MX: [[10, "mx.secure.test"], [20, "mx.insecure.test"]], secure: true },
  "mx.insecure.test": { A: ["127.0.0.10"] },
  "mx.secure.test": { A: ["127.0.0.9"], secure: true },
  "_25._tcp.mx.secure.test": { TLSA: [[3, 1, 1, HEX]], secure: true },
  "_25._tcp.alias.secure.test": { CNAME: "_25._tcp.mx.insecure.test", secure: true },
  "_25._tcp.mx.insecure.test": { TLSA: [[3, 1, 1, HEX]] },
  "_25._tcp.none.secure.test": { secure: true, A: ["127.0.0.1"] },
};

test("without dns.dnssec: no DO bit, and an AD bit in the answer is not believed", async (t) => {
  const dns = await startDnsServer(zone);
  t.after(() => dns.close());
  // The query carries no DO, so the test server sets no AD; send one anyway with a forged flag to see it ignored.
  const resolver = createResolver({ servers: [dns.server] });
  t.after(() => resolver.close());
  const tlsa = await resolver.resolveTlsa("mx.secure.test", 25);
  assert.equal(tlsa.kind, "records");
  assert.equal(tlsa.kind === "records" && tlsa.authentic, false);
  const opt = dns.queries[0].packet.additionals?.find((a) => a.type === "OPT");
  assert.equal(opt?.type === "OPT" && opt.flag_do, false, "DO is not set");
  const mx = await resolver.resolveMx("secure.test");
  assert.ok(mx.kind === "hosts" && mx.authentic === undefined && mx.hosts[0].authentic === undefined);
});

test("with dns.dnssec: DO is set; records, MX and addresses are authentic only when every response had AD", async (t) => {
  const dns = await startDnsServer(zone);
  t.after(() => dns.close());
  const resolver = createResolver({ servers: [dns.server], dnssec: true });
  t.after(() => resolver.close());
  const tlsa = await resolver.resolveTlsa("mx.secure.test", 25);
  assert.deepEqual(tlsa, { kind: "records", name: "_25._tcp.mx.secure.test", records: [{ usage: 3, selector: 1, matchingType: 1, data: Buffer.from(HEX, "hex") }], authentic: true });
  const opt = dns.queries[0].packet.additionals?.find((a) => a.type === "OPT");
  assert.equal(opt?.type === "OPT" && opt.flag_do, true, "DO is set");

  const mx = await resolver.resolveMx("secure.test");
  assert.ok(mx.kind === "hosts");
  assert.equal(mx.authentic, true);
  assert.deepEqual(mx.hosts.map((h) => [h.exchange, h.authentic]), [["mx.secure.test", true], ["mx.insecure.test", undefined]], "an A and a secure NODATA for AAAA; an insecure A");

  // A secure CNAME to an insecure target: the answer is not authentic.
  const chained = await resolver.resolveTlsa("alias.secure.test", 25);
  assert.ok(chained.kind === "records" && chained.authentic === false);
  // A secure NODATA: the host has no TLSA, provably.
  assert.deepEqual(await resolver.resolveTlsa("none.secure.test", 25), { kind: "none", name: "_25._tcp.none.secure.test", authentic: true });
  // NXDOMAIN outside any secure name: not authentic.
  assert.deepEqual(await resolver.resolveTlsa("nowhere.test", 25), { kind: "none", name: "_25._tcp.nowhere.test", authentic: false });
});

test("a validating unbound: a signed zone is authentic, an unsigned one is not, a tampered one is a temporary failure", { timeout: 60_000 }, async (t) => {
  const unbound = await startUnbound([
    {
      origin: "signed.test", signed: true,
      records: ["@ MX 10 mx.signed.test.", "mx A 127.0.0.9", "mx AAAA ::1", `_25._tcp.mx TLSA 3 1 1 ${HEX}`],
    },
    { origin: "unsigned.test", signed: false, records: ["@ MX 10 mx.unsigned.test.", "mx A 127.0.0.9", `_25._tcp.mx TLSA 3 1 1 ${HEX}`] },
    {
      origin: "bogus.test", signed: true, records: ["mx A 127.0.0.9", `_25._tcp.mx TLSA 3 1 1 ${HEX}`],
      // The TLSA data changed after signing: its RRSIG no longer verifies.
      tamper: (text) => text.replace(/(TLSA\s+3 1 1 )aa/, "$1bb"),
    },
  ]);
  t.after(() => unbound.close());
  const resolver = createResolver({ servers: [unbound.server], dnssec: true, timeout: 5000 });
  t.after(() => resolver.close());

  const signed = await resolver.resolveTlsa("mx.signed.test", 25);
  assert.ok(signed.kind === "records" && signed.authentic, `${JSON.stringify(signed)}\n${unbound.log()}`);
  assert.equal(signed.records[0].data.toString("hex"), HEX);
  const mx = await resolver.resolveMx("signed.test");
  assert.ok(mx.kind === "hosts" && mx.authentic === true && mx.hosts[0].authentic === true, JSON.stringify(mx));
  assert.deepEqual(await resolver.resolveTlsa("other.signed.test", 25), { kind: "none", name: "_25._tcp.other.signed.test", authentic: true }, "a signed NXDOMAIN (NSEC3) is authentic");

  const unsigned = await resolver.resolveTlsa("mx.unsigned.test", 25);
  assert.ok(unsigned.kind === "records" && unsigned.authentic === false, JSON.stringify(unsigned));
  const mx2 = await resolver.resolveMx("unsigned.test");
  assert.ok(mx2.kind === "hosts" && mx2.authentic === undefined && mx2.hosts[0].authentic === undefined);

  const bogus = await resolver.resolveTlsa("mx.bogus.test", 25);
  assert.equal(bogus.kind, "temporary", JSON.stringify(bogus));
  assert.match((bogus as { reason: string }).reason, /SERVFAIL/);

  // The same unbound, trusted without dnssec: nothing is authentic.
  const plain = createResolver({ servers: [unbound.server] });
  t.after(() => plain.close());
  const p = await plain.resolveTlsa("mx.signed.test", 25);
  assert.ok(p.kind === "records" && p.authentic === false);
});
