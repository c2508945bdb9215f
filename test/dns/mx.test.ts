import { test } from "node:test";
import assert from "node:assert/strict";
import { createResolver, type MxResult } from "../../src/dns/resolver.ts";
import { orderByPreference } from "../../src/dns/mx.ts";
import { startDnsServer, type Zone } from "../support/dns-server.ts";

const zone: Zone = {
  test: { SOA: { minimum: 60 } },
  "a.test": { MX: [[20, "mx3.a.test"], [10, "mx1.a.test"], [10, "mx2.a.test"], [30, "mx4.a.test"]] },
  "mx1.a.test": { A: ["127.0.0.11"], AAAA: ["2001:db8::11"] },
  "mx2.a.test": { A: ["127.0.0.12"] },
  "mx3.a.test": { AAAA: ["2001:db8::13"] },
  "mx4.a.test": { A: ["127.0.0.14", "127.0.0.15"] },
  "implicit.test": { A: ["127.0.0.20"], AAAA: ["::1"] },
  "nothing.test": { TXT: ["only text here"] },
  "null.test": { MX: [[0, "."]] },
  "mixed-null.test": { MX: [[0, "."], [10, "mx1.a.test"]] },
  "ghosts.test": { MX: [[10, "gone1.test"], [20, "gone2.test"]] },
  "half.test": { MX: [[10, "gone1.test"], [20, "mx2.a.test"]] },
  "noaddr.test": { MX: [[10, "nothing.test"]] },
  "flaky.test": { MX: [[10, "broken.test"], [20, "gone1.test"]] },
  "broken.test": { A: ["127.0.0.30"] },
  "dup.test": { MX: [[10, "mx2.a.test"], [20, "MX2.A.TEST."]] },
  "upper.test": { MX: [[5, "MX1.A.Test."]] },
  "xn--bcher-kva.test": { MX: [[10, "mx2.a.test"]] },
};

async function setup(t: import("node:test").TestContext, options: Parameters<typeof createResolver>[0] = {}) {
  const dns = await startDnsServer(zone);
  const resolver = createResolver({ servers: [dns.server], timeout: 1000, ...options });
  t.after(async () => {
    resolver.close();
    await dns.close();
  });
  return { dns, resolver };
}

function hostsOf(r: MxResult) {
  assert.equal(r.kind, "hosts", JSON.stringify(r));
  return r.kind === "hosts" ? r.hosts : [];
}

test("MX hosts are sorted by preference with addresses, IPv6 first", async (t) => {
  const { resolver } = await setup(t, { random: () => 0.999 });
  const r = await resolver.resolveMx("a.test");
  assert.deepEqual(r, {
    kind: "hosts",
    implicit: false,
    hosts: [
      { exchange: "mx1.a.test", preference: 10, addresses: ["2001:db8::11", "127.0.0.11"] },
      { exchange: "mx2.a.test", preference: 10, addresses: ["127.0.0.12"] },
      { exchange: "mx3.a.test", preference: 20, addresses: ["2001:db8::13"] },
      { exchange: "mx4.a.test", preference: 30, addresses: ["127.0.0.14", "127.0.0.15"] },
    ],
  });
});

test("equal preferences are shuffled with the injected random, others keep their order", async (t) => {
  const { resolver } = await setup(t, { random: () => 0 });
  const first = hostsOf(await resolver.resolveMx("a.test")).map((h) => h.exchange);
  assert.deepEqual(first, ["mx2.a.test", "mx1.a.test", "mx3.a.test", "mx4.a.test"]);
  // The shuffle happens on every call, cached or not.
  let n = 0;
  const seen = new Set<string>();
  const { resolver: r2 } = await setup(t, { random: () => [0, 0.999][n++ % 2] });
  for (let i = 0; i < 4; i++) seen.add(hostsOf(await r2.resolveMx("a.test")).map((h) => h.exchange).slice(0, 2).join(" "));
  assert.deepEqual([...seen].sort(), ["mx1.a.test mx2.a.test", "mx2.a.test mx1.a.test"]);
});

test("orderByPreference shuffles only within a preference, uniformly enough", () => {
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const counts = new Map<string, number>();
  const items = [{ preference: 5, n: "a" }, { preference: 5, n: "b" }, { preference: 5, n: "c" }, { preference: 1, n: "z" }];
  for (let i = 0; i < 600; i++) {
    const order = orderByPreference(items, random).map((x) => x.n).join("");
    assert.equal(order[0], "z");
    counts.set(order, (counts.get(order) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  for (const c of counts.values()) assert.ok(c > 50, `each permutation appears: ${[...counts]}`);
});

test("no MX records: the domain itself is the implicit MX (RFC 5321 §5.1)", async (t) => {
  const { resolver } = await setup(t);
  assert.deepEqual(await resolver.resolveMx("implicit.test"), {
    kind: "hosts",
    implicit: true,
    hosts: [{ exchange: "implicit.test", preference: 0, addresses: ["::1", "127.0.0.20"] }],
  });
});

test("no MX and no A/AAAA is permanent", async (t) => {
  const { resolver } = await setup(t);
  const r = await resolver.resolveMx("nothing.test");
  assert.equal(r.kind, "permanent");
  assert.match((r as { reason: string }).reason, /no MX and no A\/AAAA/);
});

test("null MX (RFC 7505)", async (t) => {
  const { resolver } = await setup(t);
  assert.deepEqual(await resolver.resolveMx("null.test"), { kind: "null-mx" });
  // A "." next to real MX records breaks RFC 7505 §3: the real ones are used.
  assert.deepEqual(hostsOf(await resolver.resolveMx("mixed-null.test")).map((h) => h.exchange), ["mx1.a.test"]);
});

test("NXDOMAIN is permanent", async (t) => {
  const { resolver } = await setup(t);
  const r = await resolver.resolveMx("nowhere.test");
  assert.equal(r.kind, "permanent");
  assert.match((r as { reason: string }).reason, /nowhere\.test.*NXDOMAIN/);
});

test("MX hosts that do not exist are skipped; all missing is permanent", async (t) => {
  const { resolver } = await setup(t);
  assert.deepEqual(hostsOf(await resolver.resolveMx("half.test")), [
    { exchange: "mx2.a.test", preference: 20, addresses: ["127.0.0.12"] },
  ]);
  const ghosts = await resolver.resolveMx("ghosts.test");
  assert.equal(ghosts.kind, "permanent");
  assert.match((ghosts as { reason: string }).reason, /gone1\.test \(NXDOMAIN\), gone2\.test \(NXDOMAIN\)/);
  const noaddr = await resolver.resolveMx("noaddr.test");
  assert.equal(noaddr.kind, "permanent");
  assert.match((noaddr as { reason: string }).reason, /nothing\.test \(no A\/AAAA\)/);
});

test("an MX host that fails temporarily, with no other usable host, is temporary", async (t) => {
  const { dns, resolver } = await setup(t);
  dns.setBehaviour("broken.test", "servfail");
  const r = await resolver.resolveMx("flaky.test");
  assert.equal(r.kind, "temporary");
  assert.match((r as { reason: string }).reason, /broken\.test\/A+: SERVFAIL/);
});

test("the same exchange listed twice is kept once, names are lower-cased without the dot", async (t) => {
  const { resolver } = await setup(t);
  assert.deepEqual(hostsOf(await resolver.resolveMx("dup.test")).map((h) => [h.exchange, h.preference]), [["mx2.a.test", 10]]);
  assert.deepEqual(hostsOf(await resolver.resolveMx("upper.test")).map((h) => h.exchange), ["mx1.a.test"]);
});

test("domain names: case, trailing dot and IDN (U-labels go out as A-labels)", async (t) => {
  const { dns, resolver } = await setup(t);
  assert.equal((await resolver.resolveMx("A.Test.")).kind, "hosts");
  assert.deepEqual(hostsOf(await resolver.resolveMx("Bücher.TEST")).map((h) => h.exchange), ["mx2.a.test"]);
  assert.ok(dns.queries.some((q) => q.name === "xn--bcher-kva.test" && q.type === "MX"));
  assert.equal((await resolver.resolveMx("bad..name")).kind, "permanent");
  assert.equal((await resolver.resolveMx(`${"x".repeat(64)}.test`)).kind, "permanent");
});

test("ipv6: false asks for A only; addressOrder ipv4-first", async (t) => {
  const { dns, resolver } = await setup(t, { ipv6: false });
  assert.deepEqual(hostsOf(await resolver.resolveMx("implicit.test"))[0].addresses, ["127.0.0.20"]);
  assert.ok(!dns.queries.some((q) => q.type === "AAAA"));
  const { resolver: v4first } = await setup(t, { addressOrder: "ipv4-first" });
  assert.deepEqual(hostsOf(await v4first.resolveMx("implicit.test"))[0].addresses, ["127.0.0.20", "::1"]);
});

test("TXT: character-strings of a record are joined; NXDOMAIN is permanent", async (t) => {
  const dns = await startDnsServer({ "t.test": { TXT: [["v=spf1 ", "include:x.test -all"], "second"] } });
  const resolver = createResolver({ servers: [dns.server] });
  t.after(async () => {
    resolver.close();
    await dns.close();
  });
  assert.deepEqual(await resolver.resolveTxt("t.test"), { kind: "txt", records: ["v=spf1 include:x.test -all", "second"] });
  assert.deepEqual(await resolver.resolveTxt("nope.test"), { kind: "permanent", reason: "nope.test: domain not found (NXDOMAIN)" });
});
