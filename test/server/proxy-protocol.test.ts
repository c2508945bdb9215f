import { test } from "node:test";
import assert from "node:assert/strict";
import { formatIPv6, isTrusted, parseProxyHeader } from "../../src/server/proxy-protocol.ts";
import { networkMatcher } from "../../src/mail/networks.ts";

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function v2(verCmd: number, famProto: number, payload: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(payload.length);
  return Buffer.concat([SIG, Buffer.from([verCmd, famProto]), len, payload]);
}

function tlv(type: number, value: Buffer): Buffer {
  const h = Buffer.alloc(3);
  h[0] = type;
  h.writeUInt16BE(value.length, 1);
  return Buffer.concat([h, value]);
}

function v4payload(): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from([192, 0, 2, 1]).copy(b, 0);
  Buffer.from([198, 51, 100, 7]).copy(b, 4);
  b.writeUInt16BE(56324, 8);
  b.writeUInt16BE(25, 10);
  return b;
}

function v6payload(): Buffer {
  const b = Buffer.alloc(36);
  Buffer.from("20010db8000000000000000000000001", "hex").copy(b, 0);
  Buffer.from("20010db8000100000000000000000000", "hex").copy(b, 16);
  b.writeUInt16BE(40000, 32);
  b.writeUInt16BE(587, 34);
  return b;
}

const SMTP = Buffer.from("EHLO x\r\n");

test("v1 TCP4", () => {
  const h = Buffer.from("PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\r\n");
  assert.deepEqual(parseProxyHeader(Buffer.concat([h, SMTP])), {
    status: "ok",
    consumed: h.length,
    command: "PROXY",
    source: { address: "192.0.2.1", port: 56324 },
    destination: { address: "198.51.100.7", port: 25 },
  });
});

test("v1 TCP6 (addresses normalized)", () => {
  const h = Buffer.from("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:192.0.2.9 65535 0\r\n");
  assert.deepEqual(parseProxyHeader(h), {
    status: "ok",
    consumed: h.length,
    command: "PROXY",
    source: { address: "2001:db8::1", port: 65535 },
    destination: { address: "::ffff:192.0.2.9", port: 0 },
  });
});

test("v1 UNKNOWN, with and without addresses", () => {
  assert.deepEqual(parseProxyHeader(Buffer.from("PROXY UNKNOWN\r\nEHLO")), { status: "ok", consumed: 15, command: "PROXY" });
  const h = Buffer.from("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
  assert.deepEqual(parseProxyHeader(h), { status: "ok", consumed: h.length, command: "PROXY" });
});

test("v1 maximum length (107 bytes) accepted", () => {
  const a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const h = Buffer.from(`PROXY TCP6 ${a} ${a} 65535 65535\r\n`);
  assert.equal(h.length, 104);
  assert.equal(parseProxyHeader(h).status, "ok");
  const u = Buffer.from(`PROXY UNKNOWN ${"x".repeat(107 - 16)}\r\n`);
  assert.equal(u.length, 107);
  assert.equal(parseProxyHeader(u).status, "ok");
});

test("v1 byte-by-byte feeding is incomplete until the CRLF", () => {
  const h = Buffer.from("PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\r\n");
  for (let i = 0; i < h.length; i++) {
    assert.deepEqual(parseProxyHeader(h.subarray(0, i)), { status: "incomplete" }, `at ${i}`);
  }
  assert.equal(parseProxyHeader(h).status, "ok");
});

test("v2 byte-by-byte feeding is incomplete until the whole block", () => {
  const h = v2(0x21, 0x11, Buffer.concat([v4payload(), tlv(0x04, Buffer.alloc(0))]));
  for (let i = 0; i < h.length; i++) {
    assert.deepEqual(parseProxyHeader(h.subarray(0, i)), { status: "incomplete" }, `at ${i}`);
  }
  assert.equal(parseProxyHeader(h).status, "ok");
});

test("v1 malformed variants", () => {
  for (const bad of [
    "PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\n",
    "PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\rX",
    "PROXY TCP4 192.0.2.256 198.51.100.7 56324 25\r\n",
    "PROXY TCP4 192.0.2.01 198.51.100.7 56324 25\r\n",
    "PROXY TCP4 2001:db8::1 198.51.100.7 56324 25\r\n",
    "PROXY TCP6 192.0.2.1 2001:db8::2 56324 25\r\n",
    "PROXY TCP6 fe80::1%eth0 2001:db8::2 56324 25\r\n",
    "PROXY TCP4 192.0.2.1 198.51.100.7 65536 25\r\n",
    "PROXY TCP4 192.0.2.1 198.51.100.7 056 25\r\n",
    "PROXY TCP4 192.0.2.1 198.51.100.7 -1 25\r\n",
    "PROXY TCP4  192.0.2.1 198.51.100.7 1 25\r\n",
    "PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n",
    "PROXY TCP4 192.0.2.1 198.51.100.7 1 2 3\r\n",
    "PROXY TCP4 192.0.2.1 198.51.100.7 1 25 \r\n",
    "PROXY UDP4 192.0.2.1 198.51.100.7 1 25\r\n",
    "PROXY tcp4 192.0.2.1 198.51.100.7 1 25\r\n",
    "PROXY\r\n",
    "proxy TCP4 192.0.2.1 198.51.100.7 1 25\r\n",
  ]) {
    assert.equal(parseProxyHeader(Buffer.from(bad)).status, "error", JSON.stringify(bad));
  }
});

test("v1 too long: no CRLF within 107 bytes, or CRLF just past it", () => {
  assert.equal(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${"x".repeat(100)}`)).status, "error");
  const over = Buffer.from(`PROXY UNKNOWN ${"x".repeat(107 - 15)}\r\n`);
  assert.equal(over.length, 108);
  assert.equal(parseProxyHeader(over).status, "error");
});

test("garbage is an error at once, without waiting for 107 bytes", () => {
  for (const bad of ["EHLO example.com\r\n", "G", "PROXZ", "PROXY X", "PROXY TCP4 1.2.3.4x", "PROXY TCP4 1.2.3.4 5.6.7.8 12a", "PROXY TCP4 \x00", "\r\n\r\nX"]) {
    assert.equal(parseProxyHeader(Buffer.from(bad, "latin1")).status, "error", JSON.stringify(bad));
  }
  assert.equal(parseProxyHeader(Buffer.alloc(0)).status, "incomplete");
  assert.equal(parseProxyHeader(Buffer.from("PROXY UNK")).status, "incomplete");
});

test("v2 PROXY over IPv4 with TLVs", () => {
  const payload = Buffer.concat([v4payload(), tlv(0x01, Buffer.from("smtp")), tlv(0x20, Buffer.from([1, 0, 0, 0, 0])), tlv(0x04, Buffer.alloc(3))]);
  const h = v2(0x21, 0x11, payload);
  assert.deepEqual(parseProxyHeader(Buffer.concat([h, SMTP])), {
    status: "ok",
    consumed: h.length,
    command: "PROXY",
    source: { address: "192.0.2.1", port: 56324 },
    destination: { address: "198.51.100.7", port: 25 },
  });
});

test("v2 PROXY over IPv6", () => {
  const h = v2(0x21, 0x21, v6payload());
  assert.deepEqual(parseProxyHeader(h), {
    status: "ok",
    consumed: 16 + 36,
    command: "PROXY",
    source: { address: "2001:db8::1", port: 40000 },
    destination: { address: "2001:db8:1::", port: 587 },
  });
});

test("v2 LOCAL has no source, whatever the family, TLVs skipped", () => {
  const local = v2(0x20, 0x00, Buffer.alloc(0));
  assert.deepEqual(parseProxyHeader(Buffer.concat([local, SMTP])), { status: "ok", consumed: 16, command: "LOCAL" });
  const withAddrs = v2(0x20, 0x11, Buffer.concat([v4payload(), tlv(0xe0, Buffer.from("x"))]));
  assert.deepEqual(parseProxyHeader(withAddrs), { status: "ok", consumed: withAddrs.length, command: "LOCAL" });
});

test("v2 UNSPEC and UNIX families have no source", () => {
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0))), { status: "ok", consumed: 16, command: "PROXY" });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216))), { status: "ok", consumed: 16 + 216, command: "PROXY" });
});

test("v2 malformed variants", () => {
  const bad: Array<[string, Buffer]> = [
    ["bad signature", Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x55]), Buffer.alloc(10)])],
    ["version 1", v2(0x11, 0x11, v4payload())],
    ["command 2", v2(0x22, 0x11, v4payload())],
    ["family 4", v2(0x21, 0x41, v4payload())],
    ["transport 3", v2(0x21, 0x13, v4payload())],
    ["too short for INET", v2(0x21, 0x11, Buffer.alloc(11))],
    ["too short for INET6", v2(0x21, 0x21, Buffer.alloc(12))],
    ["too short for UNIX", v2(0x21, 0x31, Buffer.alloc(100))],
    ["DGRAM", v2(0x21, 0x12, v4payload())],
    ["truncated TLV", v2(0x21, 0x11, Buffer.concat([v4payload(), Buffer.from([0x01, 0x00])]))],
    ["TLV overrun", v2(0x21, 0x11, Buffer.concat([v4payload(), Buffer.from([0x01, 0x00, 0x09, 0x41])]))],
  ];
  for (const [name, buf] of bad) assert.equal(parseProxyHeader(buf).status, "error", name);
  // A length over the limit is refused as soon as the length field is read.
  const huge = Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0xff, 0xff])]);
  assert.equal(parseProxyHeader(huge).status, "error");
  // A bad signature byte is refused at once.
  assert.equal(parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])).status, "error");
});

test("formatIPv6 follows RFC 5952", () => {
  const hex = (s: string) => Buffer.from(s, "hex");
  assert.equal(formatIPv6(hex("00000000000000000000000000000000")), "::");
  assert.equal(formatIPv6(hex("00000000000000000000000000000001")), "::1");
  assert.equal(formatIPv6(hex("20010db8000000010000000000000001")), "2001:db8:0:1::1");
  assert.equal(formatIPv6(hex("20010db8000000000001000000000001")), "2001:db8::1:0:0:1");
  assert.equal(formatIPv6(hex("20010db800010001000100010001ffff")), "2001:db8:1:1:1:1:1:ffff");
  assert.equal(formatIPv6(hex("20010db8000000010001000100010001")), "2001:db8:0:1:1:1:1:1");
  assert.equal(formatIPv6(hex("00000000000000000000ffffc0000201")), "::ffff:192.0.2.1");
});

test("isTrusted: v4, v6, host entries and IPv4-mapped IPv6", () => {
  const trusted = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"];
  assert.equal(isTrusted("10.1.2.3", trusted), true);
  assert.equal(isTrusted("11.1.2.3", trusted), false);
  assert.equal(isTrusted("192.0.2.7", trusted), true);
  assert.equal(isTrusted("192.0.2.8", trusted), false);
  assert.equal(isTrusted("2001:db8:ffff::1", trusted), true);
  assert.equal(isTrusted("2001:db9::1", trusted), false);
  assert.equal(isTrusted("::1", trusted), true);
  assert.equal(isTrusted("::ffff:10.9.9.9", trusted), true);
  assert.equal(isTrusted("::FFFF:192.0.2.7", trusted), true);
  assert.equal(isTrusted("::ffff:11.9.9.9", trusted), false);
  assert.equal(isTrusted("not an ip", trusted), false);
  assert.equal(isTrusted("10.0.0.1", []), false);
  assert.equal(isTrusted("203.0.113.5", ["0.0.0.0/0"]), true);
});

test("the trusted-proxy list refuses invalid entries", () => {
  for (const bad of ["10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "10.0.0.0/08", "banana", "10.0.0/8", "fe80::1%eth0"]) {
    assert.throws(() => networkMatcher([bad]), TypeError, bad);
  }
});
