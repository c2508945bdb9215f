import { test } from "node:test";
import assert from "node:assert/strict";
import { createResolver } from "../../src/dns/resolver.ts";
import { startDnsServer, type Zone } from "../support/dns-server.ts";

const chain = (prefix: string, links: number, end: string): Zone =>
  Object.fromEntries(Array.from({ length: links }, (_, i) => [`${prefix}${i}.test`, { CNAME: i + 1 < links ? `${prefix}${i + 1}.test` : end }]));

const zone: Zone = {
  test: { SOA: { minimum: 60 } },
  "a.test": { MX: [[10, "mx.a.test"]], A: ["127.0.0.2"], TXT: ["hello"] },
  "mx.a.test": { A: ["127.0.0.3"] },
  "alias.test": { CNAME: "a.test" },
  "mx-alias.test": { MX: [[10, "www.alias.test"]] },
  "www.alias.test": { CNAME: "mx.a.test" },
  "dangling.test": { CNAME: "missing.test" },
  "loop1.test": { CNAME: "loop2.test" },
  "loop2.test": { CNAME: "loop1.test" },
  ...chain("eight", 8, "a.test"),
  ...chain("nine", 9, "a.test"),
};

async function setup(t: import("node:test").TestContext) {
  const dns = await startDnsServer(zone);
  const resolver = createResolver({ servers: [dns.server], ipv6: false });
  t.after(async () => {
    resolver.close();
    await dns.close();
  });
  return { dns, resolver };
}

test("a CNAME chain in the answer is followed without asking again", async (t) => {
  const { dns, resolver } = await setup(t);
  assert.deepEqual(await resolver.resolveAddresses("alias.test"), { kind: "addresses", addresses: ["127.0.0.2"] });
  assert.deepEqual(await resolver.resolveTxt("alias.test"), { kind: "txt", records: ["hello"] });
  assert.deepEqual(await resolver.resolveMx("alias.test"), {
    kind: "hosts",
    implicit: false,
    hosts: [{ exchange: "mx.a.test", preference: 10, addresses: ["127.0.0.3"] }],
  });
  assert.deepEqual(await resolver.resolveMx("mx-alias.test"), {
    kind: "hosts",
    implicit: false,
    hosts: [{ exchange: "www.alias.test", preference: 10, addresses: ["127.0.0.3"] }],
  });
  assert.deepEqual(
    dns.queries.map((q) => `${q.name}/${q.type}`),
    ["alias.test/A", "alias.test/TXT", "alias.test/MX", "mx.a.test/A", "mx-alias.test/MX", "www.alias.test/A"],
  );
});

test("a lone CNAME in the answer: the target is asked for", async (t) => {
  const { dns, resolver } = await setup(t);
  dns.setBehaviour("*", "cname-only");
  assert.deepEqual(await resolver.resolveAddresses("alias.test"), { kind: "addresses", addresses: ["127.0.0.2"] });
  assert.deepEqual(dns.queries.map((q) => `${q.name}/${q.type}`), ["alias.test/A", "a.test/A"]);
  assert.deepEqual(await resolver.resolveAddresses("eight0.test"), { kind: "addresses", addresses: ["127.0.0.2"] });
  assert.equal(dns.queries.length, 2 + 8, "one query per link; a.test/A came from the cache");
});

test("a CNAME to a name that does not exist is NXDOMAIN", async (t) => {
  const { resolver } = await setup(t);
  const r = await resolver.resolveAddresses("dangling.test");
  assert.deepEqual(r, { kind: "permanent", reason: "dangling.test: host not found (NXDOMAIN)" });
  assert.equal((await resolver.resolveMx("dangling.test")).kind, "permanent");
});

test("CNAME loops and chains longer than 8 are temporary, in the answer or asked link by link", async (t) => {
  const { dns, resolver } = await setup(t);
  const loop = await resolver.resolveAddresses("loop1.test");
  assert.equal(loop.kind, "temporary");
  assert.match((loop as { reason: string }).reason, /CNAME loop/);
  assert.deepEqual(await resolver.resolveAddresses("eight0.test"), { kind: "addresses", addresses: ["127.0.0.2"] });
  const long = await resolver.resolveAddresses("nine0.test");
  assert.equal(long.kind, "temporary");
  assert.match((long as { reason: string }).reason, /CNAME chain longer than 8/);

  dns.setBehaviour("*", "cname-only");
  const loop2 = await resolver.resolveTxt("loop2.test");
  assert.match((loop2 as { reason: string }).reason, /CNAME loop/);
  assert.deepEqual(dns.queries.slice(-2).map((q) => q.name), ["loop2.test", "loop1.test"]);
  const long2 = await resolver.resolveTxt("nine0.test");
  assert.match((long2 as { reason: string }).reason, /CNAME chain longer than 8/);
});
