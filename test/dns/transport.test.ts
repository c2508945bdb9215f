import { test } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import { createResolver } from "../../src/dns/resolver.ts";
import { parseServerAddress } from "../../src/dns/names.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../support/dns-server.ts";

const zone: Zone = {
  "a.test": { MX: [[10, "mx.a.test"]], A: ["127.0.0.2"], TXT: ["v=spf1 -all"] },
  "mx.a.test": { A: ["127.0.0.3"], AAAA: ["2001:db8::3"] },
  "big.test": { TXT: Array.from({ length: 12 }, (_, i) => `record ${i} ${"x".repeat(180)}`) },
};

async function servers(t: import("node:test").TestContext, n: number, address = "127.0.0.1"): Promise<TestDnsServer[]> {
  const list = await Promise.all(Array.from({ length: n }, () => startDnsServer(zone, { address })));
  t.after(() => Promise.all(list.map((s) => s.close())));
  return list;
}

test("queries carry RD, a fresh id and EDNS0 with a 1232-byte payload", async (t) => {
  const [dns] = await servers(t, 1);
  const resolver = createResolver({ servers: [dns.server] });
  t.after(() => resolver.close());
  await resolver.resolveTxt("a.test");
  await resolver.resolveTxt("mx.a.test");
  const [q1, q2] = dns.queries;
  assert.equal(q1.packet.flag_rd, true);
  const opt = q1.packet.additionals?.find((a) => a.type === "OPT");
  assert.equal(opt?.type === "OPT" && opt.udpPayloadSize, 1232);
  assert.equal(q1.transport, "udp");
  assert.ok(q1.id !== q2.id || q1.port !== q2.port);
});

test("SERVFAIL: the next server is asked; all failing is temporary and each is asked once", async (t) => {
  const [bad, good] = await servers(t, 2);
  bad.setBehaviour("*", "servfail");
  const resolver = createResolver({ servers: [bad.server, good.server] });
  t.after(() => resolver.close());
  assert.deepEqual(await resolver.resolveTxt("a.test"), { kind: "txt", records: ["v=spf1 -all"] });
  assert.equal(bad.queries.length, 1);
  assert.equal(good.queries.length, 1);

  good.setBehaviour("*", "refused");
  const r = await resolver.resolveTxt("mx.a.test");
  assert.equal(r.kind, "temporary");
  assert.match((r as { reason: string }).reason, new RegExp(`SERVFAIL from ${bad.server}; REFUSED from ${good.server}`));
  assert.equal(bad.queries.length, 2, "a server that answered SERVFAIL is not asked again in the second round");
  assert.equal(good.queries.length, 2);
});

test("no answer: each try times out, then temporary; a silent first server falls through to the second", async (t) => {
  const [silent, good] = await servers(t, 2);
  silent.setBehaviour("*", "drop");
  const alone = createResolver({ servers: [silent.server], timeout: 50, tries: 2 });
  t.after(() => alone.close());
  const r = await alone.resolveMx("a.test");
  assert.equal(r.kind, "temporary");
  assert.match((r as { reason: string }).reason, /no answer from 127\.0\.0\.1:\d+ \(udp, 50 ms\)/);
  assert.equal(silent.queries.length, 2);
  assert.equal(alone.stats().timeouts, 2);

  const both = createResolver({ servers: [silent.server, good.server], timeout: 50 });
  t.after(() => both.close());
  assert.deepEqual(await both.resolveAddresses("mx.a.test"), { kind: "addresses", addresses: ["2001:db8::3", "127.0.0.3"] });
});

test("TC=1 over UDP: the question is asked again over TCP", async (t) => {
  const [dns] = await servers(t, 1);
  dns.setBehaviour("a.test", "truncate");
  const resolver = createResolver({ servers: [dns.server] });
  t.after(() => resolver.close());
  assert.deepEqual(await resolver.resolveTxt("a.test"), { kind: "txt", records: ["v=spf1 -all"] });
  assert.deepEqual(dns.queries.map((q) => q.transport), ["udp", "tcp"]);
  assert.equal(resolver.stats().tcpFallbacks, 1);
  // An answer bigger than the 1232 bytes advertised is truncated by the server too.
  const big = await resolver.resolveTxt("big.test");
  assert.equal(big.kind === "txt" && big.records.length, 12);
  assert.deepEqual(dns.queries.slice(2).map((q) => q.transport), ["udp", "tcp"]);
});

test("a server that answers FORMERR to EDNS0 is asked again without it", async (t) => {
  const [dns] = await servers(t, 1);
  dns.setBehaviour("*", "no-edns");
  const resolver = createResolver({ servers: [dns.server] });
  t.after(() => resolver.close());
  assert.deepEqual(await resolver.resolveTxt("a.test"), { kind: "txt", records: ["v=spf1 -all"] });
  assert.deepEqual(dns.queries.map((q) => q.edns), [true, false]);
});

test("forged, mismatched and malformed datagrams are ignored; the real answer is taken", async (t) => {
  const [dns] = await servers(t, 1);
  dns.setBehaviour("a.test", "drop");
  const resolver = createResolver({ servers: [dns.server], timeout: 5000, tries: 1 });
  t.after(() => resolver.close());
  const pending = resolver.resolveTxt("a.test");
  const q = await dns.waitForQuery((x) => x.name === "a.test" && x.type === "TXT");
  const real = dns.answer(q.packet);
  const forged: Answer[] = [{ type: "TXT", name: "a.test", ttl: 300, class: "IN", data: ["v=spf1 +all"] }];
  const attacker = dgram.createSocket("udp4");
  t.after(() => attacker.close());
  const fromAttacker = (msg: Buffer) =>
    new Promise<void>((resolve, reject) => attacker.send(msg, q.port, q.address, (e) => (e ? reject(e) : resolve())));

  // Right id and question, but from another port than the server's.
  await fromAttacker(dnsPacket.encode({ ...real, answers: forged }));
  // From the server's address and port, but: a wrong id, another question, not a response, garbage.
  await dns.sendUdp(dnsPacket.encode({ ...real, id: (q.id + 1) % 65536, answers: forged }), q.port, q.address);
  await dns.sendUdp(dnsPacket.encode({ ...real, questions: [{ type: "TXT", name: "b.test", class: "IN" }], answers: forged }), q.port, q.address);
  await dns.sendUdp(dnsPacket.encode({ ...real, type: "query", answers: forged }), q.port, q.address);
  await dns.sendUdp(Buffer.from("not dns at all"), q.port, q.address);
  while (resolver.stats().ignoredPackets < 5) await new Promise((r) => setImmediate(r));

  await dns.sendUdp(dnsPacket.encode(real), q.port, q.address);
  assert.deepEqual(await pending, { kind: "txt", records: ["v=spf1 -all"] });
  assert.equal(resolver.stats().ignoredPackets, 5);
});

test("IPv6 servers (\"[::1]:port\") and AAAA answers", async (t) => {
  const [dns] = await servers(t, 1, "::1");
  assert.equal(dns.server, `[::1]:${dns.port}`);
  const resolver = createResolver({ servers: [dns.server] });
  t.after(() => resolver.close());
  assert.deepEqual(await resolver.resolveAddresses("mx.a.test"), { kind: "addresses", addresses: ["2001:db8::3", "127.0.0.3"] });
  assert.equal(dns.queries[0].address, "::1");
});

test("close() ends lookups in flight as temporary", async (t) => {
  const [dns] = await servers(t, 1);
  dns.setBehaviour("*", "drop");
  const resolver = createResolver({ servers: [dns.server], timeout: 60_000 });
  const pending = resolver.resolveMx("a.test");
  await dns.waitForQuery();
  resolver.close();
  const r = await pending;
  assert.equal(r.kind, "temporary");
  assert.match((r as { reason: string }).reason, /resolver closed/);
});

test("server addresses: address, address:port, v6, [v6]:port", () => {
  assert.deepEqual(parseServerAddress("192.0.2.1"), { address: "192.0.2.1", port: 53, family: 4 });
  assert.deepEqual(parseServerAddress("127.0.0.1:5353"), { address: "127.0.0.1", port: 5353, family: 4 });
  assert.deepEqual(parseServerAddress("2001:db8::1"), { address: "2001:db8::1", port: 53, family: 6 });
  assert.deepEqual(parseServerAddress("[::1]:5353"), { address: "::1", port: 5353, family: 6 });
  assert.deepEqual(parseServerAddress("[::1]"), { address: "::1", port: 53, family: 6 });
  assert.throws(() => parseServerAddress("dns.example:53"), /not an IP address/);
  assert.throws(() => parseServerAddress("127.0.0.1:70000"), /invalid port/);
  assert.throws(() => createResolver({ servers: ["nonsense"] }), /not an IP address/);
});

test("the default servers come from the system (node:dns getServers)", () => {
  const resolver = createResolver();
  resolver.close();
});
