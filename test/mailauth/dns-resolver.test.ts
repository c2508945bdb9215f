import { test } from "node:test";
import assert from "node:assert/strict";
import { reverseName } from "../support/dns-server.ts";
import { testDns } from "./helpers.ts";

const zone = {
  "a.test": { TXT: [["v=spf1 ", "-all"]], MX: [[10, "mx.a.test"]] as const, A: ["192.0.2.1"], AAAA: ["2001:db8::1"] },
  "alias.a.test": { CNAME: "a.test" },
  [reverseName("192.0.2.1")]: { PTR: ["mx.a.test"] },
  "empty.test": { A: ["192.0.2.2"] },
};

test("records come back shaped as node's dns.promises.resolve returns them", async (t) => {
  const { mailauth } = await testDns(t, zone);
  assert.deepEqual(await mailauth("a.test", "TXT"), [["v=spf1 ", "-all"]]);
  assert.deepEqual(await mailauth("a.test", "MX"), [{ exchange: "mx.a.test", priority: 10 }]);
  assert.deepEqual(await mailauth("a.test", "A"), ["192.0.2.1"]);
  assert.deepEqual(await mailauth("a.test", "AAAA"), ["2001:db8::1"]);
  assert.deepEqual(await mailauth("1.2.0.192.in-addr.arpa", "PTR"), ["mx.a.test"]);
  assert.deepEqual(await mailauth("alias.a.test", "CNAME"), ["a.test"]);
});

test("error codes: ENOTFOUND, ENODATA (nothing published), ESERVFAIL, ETIMEOUT (temporary), EBADNAME, ENOTIMP", async (t) => {
  const { mailauth, dns } = await testDns(t, zone, { timeout: 1000 });
  const code = (p: Promise<unknown>) => p.then(() => "resolved", (e: { code: string }) => e.code);
  assert.equal(await code(mailauth("missing.test", "TXT")), "ENOTFOUND");
  assert.equal(await code(mailauth("empty.test", "TXT")), "ENODATA");
  dns.setBehaviour("a.test", "servfail");
  assert.equal(await code(mailauth("a.test", "PTR")), "ESERVFAIL");
  dns.setBehaviour("a.test", "drop");
  assert.equal(await code(mailauth("a.test", "AAAA")), "ETIMEOUT");
  assert.equal(await code(mailauth("bad..name", "A")), "EBADNAME");
  assert.equal(await code(mailauth("a.test", "NS")), "ENOTIMP");
});
