import { test } from "node:test";
import assert from "node:assert/strict";
import { createResolver } from "../../src/dns/resolver.ts";
import { reverseName, startDnsServer, type Zone } from "../support/dns-server.ts";

const zone: Zone = {
  "a.test": { TXT: [["v=DKIM1; k=rsa; ", "p=MIIB"], "second"], MX: [[10, "mx.a.test"], [20, "mx2.a.test"]], A: ["192.0.2.1"] },
  "alias.a.test": { CNAME: "a.test" },
  [reverseName("192.0.2.1")]: { PTR: ["mail.a.test", "www.a.test"] },
  [reverseName("2001:db8::1")]: { PTR: ["mail6.a.test"] },
  "nodata.test": { A: ["192.0.2.2"] },
};

async function setup(t: import("node:test").TestContext, options: { timeout?: number } = {}) {
  const dns = await startDnsServer(zone);
  const resolver = createResolver({ servers: [dns.server], tries: 1, ...options });
  t.after(async () => {
    resolver.close();
    await dns.close();
  });
  return { dns, resolver };
}

test("reverseName: in-addr.arpa for IPv4, nibbles under ip6.arpa for IPv6", () => {
  assert.equal(reverseName("192.0.2.1"), "1.2.0.192.in-addr.arpa");
  assert.equal(reverseName("2001:db8::1"), "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
});

test("raw RRsets: TXT keeps its character-strings apart, MX with preferences, PTR for IPv4 and IPv6, CNAME itself", async (t) => {
  const { resolver } = await setup(t);
  assert.deepEqual(await resolver.resolveRecords("a.test", "TXT"), { kind: "records", records: [["v=DKIM1; k=rsa; ", "p=MIIB"], ["second"]] });
  assert.deepEqual(await resolver.resolveRecords("A.Test.", "MX"), {
    kind: "records",
    records: [{ preference: 10, exchange: "mx.a.test" }, { preference: 20, exchange: "mx2.a.test" }],
  });
  assert.deepEqual(await resolver.resolveRecords("1.2.0.192.in-addr.arpa", "PTR"), { kind: "records", records: ["mail.a.test", "www.a.test"] });
  assert.deepEqual(await resolver.resolveRecords(reverseName("2001:db8::1"), "PTR"), { kind: "records", records: ["mail6.a.test"] });
  assert.deepEqual(await resolver.resolveRecords("alias.a.test", "CNAME"), { kind: "records", records: ["a.test"] });
  assert.deepEqual(await resolver.resolveRecords("alias.a.test", "A"), { kind: "records", records: ["192.0.2.1"] }, "other types follow the CNAME");
});

test("nothing published is NXDOMAIN or NODATA; a bad name is invalid without a query", async (t) => {
  const { resolver, dns } = await setup(t);
  assert.deepEqual(await resolver.resolveRecords("missing.test", "TXT"), { kind: "nxdomain" });
  assert.deepEqual(await resolver.resolveRecords("nodata.test", "TXT"), { kind: "nodata" });
  assert.deepEqual(await resolver.resolveRecords("a.test", "CNAME"), { kind: "nodata" });
  const before = dns.queries.length;
  assert.equal((await resolver.resolveRecords(`${"x".repeat(64)}.test`, "TXT")).kind, "invalid");
  assert.equal(dns.queries.length, before);
});

test("temporary failures say whether any server answered: SERVFAIL is not a timeout, silence is", async (t) => {
  const { resolver, dns } = await setup(t, { timeout: 50 });
  dns.setBehaviour("a.test", "servfail");
  const servfail = await resolver.resolveRecords("a.test", "TXT");
  assert.equal(servfail.kind, "temporary");
  assert.equal(servfail.kind === "temporary" && servfail.timeout, false);
  dns.setBehaviour("nodata.test", "drop");
  const silent = await resolver.resolveRecords("nodata.test", "PTR");
  assert.equal(silent.kind === "temporary" && silent.timeout, true);
  assert.match(silent.kind === "temporary" ? silent.reason : "", /no answer from/);
});

test("answers are cached like every other lookup: the same question is asked once", async (t) => {
  const { resolver, dns } = await setup(t);
  await resolver.resolveRecords("1.2.0.192.in-addr.arpa", "PTR");
  await resolver.resolveRecords("1.2.0.192.in-addr.arpa", "PTR");
  await resolver.resolveRecords("missing.test", "TXT");
  await resolver.resolveRecords("missing.test", "TXT");
  assert.deepEqual(dns.queries.map((q) => `${q.type} ${q.name}`), ["PTR 1.2.0.192.in-addr.arpa", "TXT missing.test"]);
});
