import { test } from "node:test";
import assert from "node:assert/strict";
import { isListingAnswer, parseAnswerFilter, parseSite, reversedClient } from "../../src/policy/dnsbl-sites.ts";

function site(text: string) {
  const r = parseSite(text);
  if (!r.ok) throw new Error(r.reason);
  return { zone: r.value.zone, weight: r.value.weight, filter: r.value.filter };
}

test("sites are written as postscreen_dnsbl_sites writes them: zone, =filter, *weight (negative: an allowlist)", () => {
  assert.deepEqual(site("zen.spamhaus.org"), { zone: "zen.spamhaus.org", weight: 1, filter: undefined });
  assert.deepEqual(site("Zen.Spamhaus.ORG.*3"), { zone: "zen.spamhaus.org", weight: 3, filter: undefined });
  assert.deepEqual(site("zen.spamhaus.org=127.0.0.[2..11]*3"), { zone: "zen.spamhaus.org", weight: 3, filter: "127.0.0.[2..11]" });
  assert.deepEqual(site("list.dnswl.org=127.0.[0..255].[1..3]*-2"), { zone: "list.dnswl.org", weight: -2, filter: "127.0.[0..255].[1..3]" });
  assert.deepEqual(site("bl.test=127.0.0.2"), { zone: "bl.test", weight: 1, filter: "127.0.0.2" });
  for (const bad of ["", "nodot", "bl.test=127.0.0", "bl.test=127.0.0.[2..]", "bl.test=127.0.0.[3..2]", "bl.test*x", "bl.test=127.0.0.256", "bl..test", "bl test.org", "bl.test=127.0.0.2.5"]) {
    assert.equal(parseSite(bad).ok, false, bad);
  }
});

test("answer filters: numbers, ranges and lists per octet", () => {
  const f = parseAnswerFilter("127.0.[0;1].[2..4;9]");
  assert.ok(f.ok);
  const yes = ["127.0.0.2", "127.0.1.4", "127.0.0.9"];
  const no = ["127.0.2.2", "127.0.0.5", "127.0.0.1", "128.0.0.2", "::1", "127.0.0.2.1"];
  for (const a of yes) assert.equal(f.value.matches(a), true, a);
  for (const a of no) assert.equal(f.value.matches(a), false, a);
});

test("without a filter only 127.0.0.0/8 answers count, and never 127.255.255.x (the list refusing the query)", () => {
  assert.equal(isListingAnswer("127.0.0.2"), true);
  assert.equal(isListingAnswer("127.0.1.10"), true);
  assert.equal(isListingAnswer("127.255.255.254"), false);
  assert.equal(isListingAnswer("192.0.2.1"), false, "a wildcard answer of an expired list domain");
});

test("reversed client names: IPv4 octets (RFC 5782 §2.1), IPv6 nibbles (§2.4), IPv4-mapped as IPv4", () => {
  assert.equal(reversedClient("127.0.0.2"), "2.0.0.127");
  assert.equal(reversedClient("::ffff:192.0.2.99"), "99.2.0.192");
  assert.equal(reversedClient("::1"), `1${".0".repeat(31)}`);
  assert.equal(reversedClient("2001:db8:1:2::3"), "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2");
  assert.equal(reversedClient("64:ff9b::192.0.2.1"), "1.0.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0");
  assert.equal(reversedClient("not an address"), undefined);
});
