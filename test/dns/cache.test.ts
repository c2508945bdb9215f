import { test } from "node:test";
import assert from "node:assert/strict";
import { ExpiringLruCache } from "../../src/dns/cache.ts";
import { createResolver } from "../../src/dns/resolver.ts";
import { startDnsServer, type Zone } from "../support/dns-server.ts";

const S = 1000;

class TestClock {
  t = Date.UTC(2026, 0, 1);
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

const zone: Zone = {
  test: { SOA: { ttl: 3600, minimum: 60 } },
  "a.test": { MX: { ttl: 120, records: [[10, "mx.a.test"]] }, TXT: { ttl: 30, records: ["a"] } },
  "mx.a.test": { A: { ttl: 300, records: ["127.0.0.3"] }, AAAA: { ttl: 100, records: ["2001:db8::3"] } },
  "b.test": { TXT: ["b"] },
  "c.test": { TXT: ["c"] },
  "forever.test": { TXT: { ttl: 7 * 86400, records: ["long"] } },
  "zero.test": { TXT: { ttl: 0, records: ["zero"] } },
  "short-alias.test": { CNAME: { ttl: 5, target: "b.test" } },
  "nosoa.other": { TXT: ["x"] },
};

async function setup(t: import("node:test").TestContext, options: Parameters<typeof createResolver>[0] = {}) {
  const dns = await startDnsServer(zone, { defaultSoa: false });
  const clock = new TestClock();
  const resolver = createResolver({ servers: [dns.server], clock, ...options });
  t.after(async () => {
    resolver.close();
    await dns.close();
  });
  const asked = (name: string, type: string) => dns.queries.filter((q) => q.name === name && q.type === type).length;
  return { dns, clock, resolver, asked };
}

test("a cached answer is not asked again; it expires with its TTL by the injected clock", async (t) => {
  const { clock, resolver, asked } = await setup(t);
  const first = await resolver.resolveMx("a.test");
  assert.deepEqual(await resolver.resolveMx("A.TEST."), first);
  assert.equal(asked("a.test", "MX"), 1);
  assert.equal(asked("mx.a.test", "A"), 1);
  assert.ok(resolver.stats().cacheHits >= 3);

  clock.advance(99 * S);
  await resolver.resolveMx("a.test");
  assert.equal(asked("mx.a.test", "AAAA"), 1);
  clock.advance(2 * S); // 101 s: the AAAA (TTL 100) has expired, the MX (120) and the A (300) have not
  await resolver.resolveMx("a.test");
  assert.deepEqual([asked("a.test", "MX"), asked("mx.a.test", "A"), asked("mx.a.test", "AAAA")], [1, 1, 2]);
  clock.advance(20 * S); // 121 s
  await resolver.resolveMx("a.test");
  assert.deepEqual([asked("a.test", "MX"), asked("mx.a.test", "A"), asked("mx.a.test", "AAAA")], [2, 1, 2]);
});

test("TTLs: capped at one day, 0 is not cached, a CNAME's shorter TTL bounds the chain", async (t) => {
  const { clock, resolver, asked } = await setup(t);
  await resolver.resolveTxt("forever.test");
  clock.advance(86400 * S - 1);
  await resolver.resolveTxt("forever.test");
  assert.equal(asked("forever.test", "TXT"), 1);
  clock.advance(1);
  await resolver.resolveTxt("forever.test");
  assert.equal(asked("forever.test", "TXT"), 2);

  await resolver.resolveTxt("zero.test");
  await resolver.resolveTxt("zero.test");
  assert.equal(asked("zero.test", "TXT"), 2);

  assert.deepEqual(await resolver.resolveTxt("short-alias.test"), { kind: "txt", records: ["b"] });
  clock.advance(5 * S);
  await resolver.resolveTxt("short-alias.test");
  assert.equal(asked("short-alias.test", "TXT"), 2);
});

test("NXDOMAIN and NODATA are cached for the SOA minimum (RFC 2308); without an SOA not at all", async (t) => {
  const { clock, resolver, asked } = await setup(t);
  assert.equal((await resolver.resolveMx("missing.test")).kind, "permanent");
  assert.equal((await resolver.resolveTxt("mx.a.test")).kind, "txt"); // NODATA: no records
  clock.advance(59 * S);
  assert.equal((await resolver.resolveMx("missing.test")).kind, "permanent");
  assert.deepEqual(await resolver.resolveTxt("mx.a.test"), { kind: "txt", records: [] });
  assert.equal(asked("missing.test", "MX"), 1);
  assert.equal(asked("mx.a.test", "TXT"), 1);
  clock.advance(1 * S);
  await resolver.resolveMx("missing.test");
  await resolver.resolveTxt("mx.a.test");
  assert.equal(asked("missing.test", "MX"), 2);
  assert.equal(asked("mx.a.test", "TXT"), 2);

  await resolver.resolveTxt("gone.other"); // no SOA above it in this zone
  await resolver.resolveTxt("gone.other");
  assert.equal(asked("gone.other", "TXT"), 2);
});

test("a temporary failure is remembered for failureTtl (30 s by default)", async (t) => {
  const { dns, clock, resolver, asked } = await setup(t);
  dns.setBehaviour("b.test", "servfail");
  assert.equal((await resolver.resolveTxt("b.test")).kind, "temporary");
  dns.setBehaviour("b.test", undefined);
  assert.equal((await resolver.resolveTxt("b.test")).kind, "temporary");
  assert.equal(asked("b.test", "TXT"), 1);
  clock.advance(30 * S);
  assert.deepEqual(await resolver.resolveTxt("b.test"), { kind: "txt", records: ["b"] });

  const { dns: dns2, resolver: noMemory, asked: asked2 } = await setup(t, { failureTtl: 0 });
  dns2.setBehaviour("b.test", "servfail");
  await noMemory.resolveTxt("b.test");
  await noMemory.resolveTxt("b.test");
  assert.equal(asked2("b.test", "TXT"), 2);
});

test("the cache is bounded: least recently used entries go first", async (t) => {
  const { resolver, asked } = await setup(t, { cacheSize: 2 });
  await resolver.resolveTxt("a.test");
  await resolver.resolveTxt("b.test");
  await resolver.resolveTxt("a.test"); // a is now the most recently used
  await resolver.resolveTxt("c.test"); // evicts b
  assert.equal(resolver.stats().cacheSize, 2);
  await resolver.resolveTxt("a.test");
  assert.equal(asked("a.test", "TXT"), 1);
  await resolver.resolveTxt("b.test");
  assert.equal(asked("b.test", "TXT"), 2);
});

test("concurrent lookups of the same name share one query", async (t) => {
  const { resolver, asked } = await setup(t);
  const results = await Promise.all([resolver.resolveTxt("c.test"), resolver.resolveTxt("c.test"), resolver.resolveTxt("C.test.")]);
  for (const r of results) assert.deepEqual(r, { kind: "txt", records: ["c"] });
  assert.equal(asked("c.test", "TXT"), 1);
});

test("ExpiringLruCache", () => {
  const clock = new TestClock();
  const cache = new ExpiringLruCache<string>(2, clock);
  cache.set("x", "1", 10);
  cache.set("y", "2", 0);
  assert.equal(cache.get("y"), undefined);
  cache.set("y", "2", 20);
  assert.deepEqual(cache.getWithTtl("x"), { value: "1", ttlMs: 10 });
  cache.set("z", "3", 20); // evicts y (x was used more recently)
  assert.equal(cache.get("y"), undefined);
  clock.advance(10);
  assert.equal(cache.get("x"), undefined);
  assert.equal(cache.get("z"), "3");
  assert.equal(cache.size, 1);
});
