import { test } from "node:test";
import assert from "node:assert/strict";
import { clientNetwork, expandIpv6, ipv6Groups, isNetwork, networkMatcher, unmapIpv4 } from "../../src/mail/networks.ts";

test("ipv6Groups expands ::, keeps a dotted IPv4 tail as two groups, refuses what is not IPv6", () => {
  assert.deepEqual(ipv6Groups("::1"), [0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(ipv6Groups("::"), [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(ipv6Groups("2001:DB8::8:800:200C:417A"), [0x2001, 0xdb8, 0, 0, 8, 0x800, 0x200c, 0x417a]);
  assert.deepEqual(ipv6Groups("::ffff:192.0.2.1"), [0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201]);
  assert.deepEqual(ipv6Groups("1:2:3:4:5:6:7:8"), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(ipv6Groups("1::"), [1, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(ipv6Groups("192.0.2.1"), undefined);
  assert.equal(ipv6Groups("fe80::1%eth0"), undefined);
  assert.equal(expandIpv6("::1"), "0000:0000:0000:0000:0000:0000:0000:0001");
});

test("clientNetwork: IPv4 itself (mapped or not), IPv6 by its prefix", () => {
  assert.equal(clientNetwork("192.0.2.7", 64), "192.0.2.7");
  assert.equal(clientNetwork("::ffff:192.0.2.7", 64), "192.0.2.7");
  assert.equal(clientNetwork("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::/64");
  assert.equal(clientNetwork("2001:db8:1:2ff::1", 56), "2001:db8:1:200::/56");
  assert.equal(clientNetwork("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::/48");
  assert.equal(clientNetwork("2001:db8::5", 128), "2001:db8:0:0:0:0:0:5");
  assert.equal(unmapIpv4("::FFFF:10.0.0.1"), "10.0.0.1");
  assert.equal(unmapIpv4("::1"), "::1");
});

test("networkMatcher: addresses and CIDR ranges of both families; mapped IPv4 clients match IPv4 entries", () => {
  const m = networkMatcher(["127.0.0.0/8", "::1", "2001:db8::/32", "192.0.2.7"]);
  for (const yes of ["127.0.0.1", "127.255.0.3", "::1", "::ffff:127.0.0.1", "2001:db8:ffff::1", "192.0.2.7"]) assert.equal(m(yes), true, yes);
  for (const no of ["128.0.0.1", "::2", "2001:db9::1", "192.0.2.8", "not an address", "fe80::1%lo"]) assert.equal(m(no), false, no);
  assert.equal(networkMatcher([])("127.0.0.1"), false);
  assert.throws(() => networkMatcher(["10.0.0.0/33"]), /10\.0\.0\.0\/33/);
  assert.equal(isNetwork("10.0.0.0/08"), false);
  assert.equal(isNetwork("::/0"), true);
});
