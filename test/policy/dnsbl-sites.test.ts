import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSite } from "../../src/config/dnsbl-sites.ts";
import { countsFor, isListingAnswer, reversedClient, type DnsblSite } from "../../src/policy/dnsbl-sites.ts";

function site(text: string): DnsblSite {
  const r = parseSite(text);
  if (!r.ok) throw new Error(r.reason);
  return r.value;
}

test("an answer counts when it matches the site's filter", () => {
  const s = site("bl.test=127.0.[0;1].[2..4;9]");
  for (const a of ["127.0.0.2", "127.0.1.4", "127.0.0.9"]) assert.equal(countsFor(s, a), true, a);
  for (const a of ["127.0.2.2", "127.0.0.5", "127.0.0.1", "128.0.0.2", "::1", "127.0.0.2.1"]) assert.equal(countsFor(s, a), false, a);
  assert.equal(countsFor(site("bl.test=127.255.255.[0..255]"), "127.255.255.254"), false, "a refusal never counts, whatever the filter");
});

test("without a filter only 127.0.0.0/8 answers count, and never 127.255.255.x (the list refusing the query)", () => {
  assert.equal(isListingAnswer("127.0.0.2"), true);
  assert.equal(isListingAnswer("127.0.1.10"), true);
  assert.equal(isListingAnswer("127.255.255.254"), false);
  assert.equal(isListingAnswer("192.0.2.1"), false, "a wildcard answer of an expired list domain");
  assert.equal(countsFor(site("bl.test"), "127.0.0.10"), true);
  assert.equal(countsFor(site("bl.test"), "192.0.2.1"), false);
});

test("reversed client names: IPv4 octets (RFC 5782 §2.1), IPv6 nibbles (§2.4), IPv4-mapped as IPv4", () => {
  assert.equal(reversedClient("127.0.0.2"), "2.0.0.127");
  assert.equal(reversedClient("::ffff:192.0.2.99"), "99.2.0.192");
  assert.equal(reversedClient("::1"), `1${".0".repeat(31)}`);
  assert.equal(reversedClient("2001:db8:1:2::3"), "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2");
  assert.equal(reversedClient("64:ff9b::192.0.2.1"), "1.0.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0");
  assert.equal(reversedClient("not an address"), undefined);
});
