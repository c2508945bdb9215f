/**
 * Forward-confirmed reverse DNS as `petrel dns --check` and `petrel doctor`
 * check it: the PTR of each address mail leaves from must name the HELO name
 * (outbound.heloName, by default hostname), and that name must have the
 * address; outbound.sourceAddress says which addresses those are.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createResolver, type ClosableResolver } from "../../src/dns/resolver.ts";
import { checkRecords } from "../../src/dns-records/check.ts";
import { reverseName, startDnsServer, type TestDnsServer } from "../support/dns-server.ts";

let dns: TestDnsServer;
let resolver: ClosableResolver;

before(async () => {
  dns = await startDnsServer({
    "mx.example.test": { A: ["127.0.0.6"] },
    "out.example.test": { A: ["127.0.0.7"] },
    [reverseName("127.0.0.6")]: { PTR: ["mx.example.test"] },
    [reverseName("127.0.0.7")]: { PTR: ["out.example.test"] },
    [reverseName("127.0.0.8")]: { PTR: ["out.example.test"] },
  });
  resolver = createResolver({ servers: [dns.server] });
});
after(async () => {
  resolver.close();
  await dns.close();
});

test("the HELO name's addresses by default, hostname when there is no HELO name", async () => {
  assert.deepEqual(await checkRecords([], { resolver, hostname: "mx.example.test" }), [{ kind: "PTR", status: "ok", text: "127.0.0.6 is mx.example.test" }]);
  assert.deepEqual(await checkRecords([], { resolver, hostname: "mx.example.test", heloName: "out.example.test" }), [{ kind: "PTR", status: "ok", text: "127.0.0.7 is out.example.test" }]);
});

test("a source address whose PTR names the HELO name, which does not have it: not confirmed", async () => {
  const [c] = await checkRecords([], { resolver, hostname: "mx.example.test", heloName: "out.example.test", sendingAddresses: ["127.0.0.8"] });
  assert.equal(c.status, "wrong");
  assert.equal(c.text, "127.0.0.8: its PTR names out.example.test, but out.example.test does not have the address 127.0.0.8: add it to out.example.test's A or AAAA records");
  const [d] = await checkRecords([], { resolver, hostname: "mx.example.test", heloName: "out.example.test", sendingAddresses: ["127.0.0.6"] });
  assert.equal(d.status, "wrong");
  assert.match(d.text, /^127\.0\.0\.6: its PTR names mx\.example\.test; .* ask its provider to set the PTR to out\.example\.test$/);
});
