import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { formatMailbox, isValidDomain, parsePath } from "../../src/smtp/address.ts";

const FROM = { allowUtf8: false, allowNull: true };
const TO = { allowUtf8: false, allowNull: false };
const FROM8 = { allowUtf8: true, allowNull: true };
const TO8 = { allowUtf8: true, allowNull: false };

function ok(text: string, opts: { allowUtf8: boolean; allowNull: boolean } = TO) {
  const r = parsePath(text, opts);
  assert.ok(r.ok, `expected ok for ${JSON.stringify(text)}: ${!r.ok ? r.reason : ""}`);
  return r;
}
function bad(text: string, opts: { allowUtf8: boolean; allowNull: boolean } = TO): string {
  const r = parsePath(text, opts);
  assert.ok(!r.ok, `expected failure for ${JSON.stringify(text)}`);
  return r.reason;
}

describe("parsePath: ordinary paths", () => {
  const cases: [string, string, string, string][] = [
    // text, localPart, domain, rest
    ["<alice@example.com>", "alice", "example.com", ""],
    ["<Alice.Smith@Example.COM>", "Alice.Smith", "example.com", ""],
    ["<bob+tag@mail.example.org> SIZE=12345", "bob+tag", "mail.example.org", " SIZE=12345"],
    ["<bounce-123=x@lists.example.net> BODY=8BITMIME", "bounce-123=x", "lists.example.net", " BODY=8BITMIME"],
    ["<o'brien@example.ie>", "o'brien", "example.ie", ""],
    ["<!#$%&'*+-/=?^_`{|}~@x.io>", "!#$%&'*+-/=?^_`{|}~", "x.io", ""],
    ["<user@localhost>", "user", "localhost", ""],
    ["<a@xn--bcher-kva.example>", "a", "xn--bcher-kva.example", ""],
    ["<a@1-2.example>", "a", "1-2.example", ""],
    ["<a@b>   SIZE=1  BODY=7BIT ", "a", "b", "   SIZE=1  BODY=7BIT "],
  ];
  for (const [text, localPart, domain, rest] of cases) {
    it(text, () => {
      const r = ok(text);
      assert.deepEqual(r.mailbox, { localPart, domain });
      assert.equal(r.rest, rest);
    });
  }

  it("tolerates exactly one space before '<' (MAIL FROM: <a@b>)", () => {
    assert.deepEqual(ok(" <a@b.c>").mailbox, { localPart: "a", domain: "b.c" });
    bad("  <a@b.c>");
    bad("\t<a@b.c>");
  });
});

describe("parsePath: null path and postmaster", () => {
  it("<> is the null reverse-path", () => {
    const r = ok("<>", FROM);
    assert.equal(r.mailbox, null);
    assert.equal(r.rest, "");
    assert.equal(ok("<> SIZE=10", FROM).rest, " SIZE=10");
    assert.equal(ok(" <>", FROM).mailbox, null);
  });
  it("<> is refused as a forward-path", () => {
    assert.match(bad("<>", TO), /null path/);
  });
  it("<postmaster> without domain for RCPT", () => {
    assert.deepEqual(ok("<postmaster>").mailbox, { localPart: "postmaster", domain: "" });
    assert.deepEqual(ok("<Postmaster>").mailbox, { localPart: "postmaster", domain: "" });
    assert.deepEqual(ok("<POSTMASTER> NOTIFY=NEVER").mailbox, { localPart: "postmaster", domain: "" });
  });
  it("<postmaster> without domain is not a reverse-path", () => {
    bad("<postmaster>", FROM);
  });
  it("postmaster with a domain is an ordinary mailbox", () => {
    assert.deepEqual(ok("<Postmaster@Example.com>").mailbox, { localPart: "Postmaster", domain: "example.com" });
  });
  it("other local parts without domain are refused", () => {
    assert.match(bad("<alice>"), /missing '@domain'/);
    bad('<"postmaster">');
    bad("<@r:postmaster>");
    bad("<postmaster@>");
  });
});

describe("parsePath: source routes (ignored)", () => {
  it("<@r1,@r2:u@d>", () => {
    assert.deepEqual(ok("<@r1,@r2:u@d>").mailbox, { localPart: "u", domain: "d" });
  });
  it("single hop", () => {
    assert.deepEqual(ok("<@relay.example.com:joe@Example.org>", FROM).mailbox, { localPart: "joe", domain: "example.org" });
  });
  it("malformed routes", () => {
    bad("<@r1:>");
    bad("<@r1,r2:u@d>");
    bad("<@:u@d>");
    bad("<@r1,@-bad:u@d>");
    bad("<@r1 u@d>");
    bad("<@r1>");
  });
});

describe("parsePath: quoted local parts", () => {
  it('<"x y"@b>', () => {
    assert.deepEqual(ok('<"x y"@b>').mailbox, { localPart: "x y", domain: "b" });
  });
  it('"john doe"@x', () => {
    assert.deepEqual(ok('<"john doe"@X.example>').mailbox, { localPart: "john doe", domain: "x.example" });
  });
  it("quoted-pairs are decoded", () => {
    assert.deepEqual(ok('<"a\\"b\\\\c"@d>').mailbox, { localPart: 'a"b\\c', domain: "d" });
    assert.deepEqual(ok('<"\\a"@d>').mailbox, { localPart: "a", domain: "d" });
  });
  it("special characters inside quotes, including '>' and '@'", () => {
    assert.deepEqual(ok('<"a>b@c,d"@e> SIZE=1').mailbox, { localPart: "a>b@c,d", domain: "e" });
    assert.equal(ok('<"a>b"@e> SIZE=1').rest, " SIZE=1");
  });
  it("malformed quoting", () => {
    bad('<"abc@d>');
    bad('<"a"b@d>');
    bad('<a"b"@d>');
    bad('<""@d>'); // empty local part refused
    bad('<"a\\\u0001"@d>');
    bad('<"a\u0000"@d>');
  });
});

describe("parsePath: address literals", () => {
  const good: [string, string][] = [
    ["<a@[192.0.2.1]>", "[192.0.2.1]"],
    ["<a@[0.0.0.0]>", "[0.0.0.0]"],
    ["<a@[255.255.255.255]>", "[255.255.255.255]"],
    ["<a@[IPv6:::1]>", "[IPv6:::1]"],
    ["<a@[ipv6:2001:DB8::1]>", "[IPv6:2001:db8::1]"],
    ["<a@[IPv6:2001:db8:0:0:0:0:0:1]>", "[IPv6:2001:db8:0:0:0:0:0:1]"],
    ["<a@[IPv6:::ffff:192.0.2.1]>", "[IPv6:::ffff:192.0.2.1]"],
    ["<a@[IPv6:::192.0.2.1]>", "[IPv6:::192.0.2.1]"],
    ["<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>", "[IPv6:1:2:3:4:5:6:192.0.2.1]"],
    ["<a@[IPv6:fe80::]>", "[IPv6:fe80::]"],
    ["<a@[IPv6:::]>", "[IPv6:::]"],
  ];
  for (const [text, domain] of good) {
    it(text, () => assert.equal(ok(text).mailbox?.domain, domain));
  }
  const hostile = [
    "<a@[999.1.1.1]>",
    "<a@[256.0.0.1]>",
    "<a@[1.2.3]>",
    "<a@[1.2.3.4.5]>",
    "<a@[1.2.3.4>",
    "<a@1.2.3.4]>",
    "<a@[]>",
    "<a@[IPv6:]>",
    "<a@[IPv6:1:2:3:4:5:6:7:8:9]>",
    "<a@[IPv6:1:2:3:4:5:6:7]>",
    "<a@[IPv6:1:2:3:4:5:6:7::]>", // "::" must stand for >= 2 groups (RFC 5321)
    "<a@[IPv6:::1::2]>",
    "<a@[IPv6:12345::1]>",
    "<a@[IPv6:g::1]>",
    "<a@[IPv6:1:2:3:4:5:6:7:1.2.3.4]>",
    "<a@[IPv6:::ffff:999.0.0.1]>",
    "<a@[IPv6:fe80::1%eth0]>",
    "<a@[x-tag:foo]>",
    "<a@[192.0.2.1].example>",
  ];
  for (const text of hostile) {
    it(`refuses ${text}`, () => void bad(text));
  }
});

describe("parsePath: hostile input", () => {
  const cases: [string, RegExp | null][] = [
    ["a@b", /enclosed/],
    ["a@b.example SIZE=10", /enclosed/],
    ["<a@b", /missing '>'/],
    ["<a@b SIZE=10", /space outside quotes/],
    ["<<a@b>>", /unexpected '<'/],
    ["<a@b>>", /after '>'/],
    ["<a@b>SIZE=10", /after '>'/],
    ["<a@b\u0000>", /control/],
    ["<a\u0000@b>", /control/],
    ["<a@b\r>", /control/],
    ["<a@b>\r\n", /after '>'/],
    ["<a@b\n>", /control/],
    ["<a@b\u007f>", /control/],
    ["<a b@c>", /space outside quotes/],
    ["<a@b c>", /space outside quotes/],
    ["< a@b>", /space outside quotes/],
    ["<a@b >", /space outside quotes/],
    ["<a@>", /missing domain/],
    ["<@b>", null],
    ["<a@@b>", /invalid domain/],
    ["<a@b@c>", /invalid domain/],
    ["<.a@b>", /invalid local part/],
    ["<a.@b>", /invalid local part/],
    ["<a..b@c>", /invalid local part/],
    ["<a(b)@c>", /invalid local part/],
    ["<a,b@c>", /invalid local part/],
    ["<a@-b.com>", /invalid domain/],
    ["<a@b-.com>", /invalid domain/],
    ["<a@b..com>", /invalid domain/],
    ["<a@b.com.>", /invalid domain/],
    ["<a@.b.com>", /invalid domain/],
    ["<a@b_c.com>", /invalid domain/],
    ["<a@b:c>", /invalid domain/],
    ["", /enclosed/],
    ["<", /missing '>'/],
    [">", /enclosed/],
  ];
  for (const [text, re] of cases) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      const reason = bad(text);
      if (re) assert.match(reason, re);
    });
  }
});

describe("parsePath: length limits (RFC 5321 §4.5.3.1)", () => {
  it("local part of 64 octets is fine, 65 is not", () => {
    assert.ok(parsePath(`<${"a".repeat(64)}@b.example>`, TO).ok);
    assert.match(bad(`<${"a".repeat(65)}@b.example>`), /local part too long/);
  });
  it("quoted local part counts as written", () => {
    assert.match(bad(`<"${"a".repeat(63)}"@b>`), /local part too long/);
  });
  it("UTF-8 local part counts octets", () => {
    assert.ok(parsePath(`<${"é".repeat(32)}@b>`, TO8).ok);
    assert.match(bad(`<${"é".repeat(33)}@b>`, TO8), /local part too long/);
  });
  it("label over 63 octets", () => {
    assert.ok(parsePath(`<a@${"l".repeat(63)}.com>`, TO).ok);
    bad(`<a@${"l".repeat(64)}.com>`);
  });
  it("300-char domain", () => {
    const domain = Array.from({ length: 5 }, () => "d".repeat(59)).join(".") + ".example"; // 303 chars
    assert.match(bad(`<a@${domain}>`), /too long/);
  });
  it("path of exactly 256 octets is fine, 257 is not", () => {
    const domain = [...Array(3)].map(() => "x".repeat(60)).join(".") + ".abcdef"; // 189
    const local = "l".repeat(64);
    assert.equal(`<${local}@${domain}>`.length, 256);
    assert.ok(parsePath(`<${local}@${domain}>`, TO).ok);
    assert.match(bad(`<${local}@${domain}g>`), /path too long/);
  });
  it("source route counts towards the path length", () => {
    const domain = [...Array(3)].map(() => "x".repeat(60)).join(".") + ".abcdef";
    assert.match(bad(`<@relay.example:${"l".repeat(64)}@${domain}>`), /path too long/);
  });
  it("the path limit is measured before the parameters", () => {
    assert.ok(parsePath(`<a@b> ENVID=${"x".repeat(100)}`, FROM).ok);
  });
});

describe("parsePath: SMTPUTF8 (RFC 6531)", () => {
  it("non-ASCII local part refused without SMTPUTF8", () => {
    assert.match(bad("<jöran@example.se>"), /SMTPUTF8/);
  });
  it("non-ASCII domain refused without SMTPUTF8", () => {
    assert.match(bad("<a@bücher.example>", FROM), /SMTPUTF8/);
  });
  it("non-ASCII accepted with SMTPUTF8", () => {
    assert.deepEqual(ok("<jöran@Bücher.Example>", TO8).mailbox, { localPart: "jöran", domain: "bücher.example" });
    assert.deepEqual(ok("<用户@例子.广告>", FROM8).mailbox, { localPart: "用户", domain: "例子.广告" });
    assert.deepEqual(ok("<ΑΒΓ@ΔΕΖ.ΕΛ>", TO8).mailbox, { localPart: "ΑΒΓ", domain: "δεζ.ελ" });
    assert.deepEqual(ok('<"jö ran"@x.se>', TO8).mailbox, { localPart: "jö ran", domain: "x.se" });
    assert.deepEqual(ok("<😀@x.se>", TO8).mailbox, { localPart: "😀", domain: "x.se" });
  });
  it("hostile non-ASCII refused even with SMTPUTF8", () => {
    bad("<a\u0085b@x.se>", TO8); // C1 control (NEL)
    bad("<a\ud800@x.se>", TO8); // lone surrogate
    bad("<a@b\u00a0c.se>", TO8); // no-break space in a domain label
    bad("<a@bü-.se>", TO8);
    bad("<a@😀.se>", TO8);
    bad("<a\u2028b@x.se>", FROM8); // line separator
    bad('<"a\u3000b"@x.se>', FROM8); // ideographic space, even quoted
  });
});

describe("formatMailbox", () => {
  const cases: [string, string, string][] = [
    ["alice", "example.com", "alice@example.com"],
    ["a.b+c", "x", "a.b+c@x"],
    ["john doe", "x", '"john doe"@x'],
    ['a"b\\c', "d", '"a\\"b\\\\c"@d'],
    [".a", "d", '".a"@d'],
    ["a..b", "d", '"a..b"@d'],
    ["jöran", "bücher.example", "jöran@bücher.example"],
    ["postmaster", "", "postmaster"],
    ["a", "[IPv6:::1]", "a@[IPv6:::1]"],
    ["", "d", '""@d'],
  ];
  for (const [localPart, domain, out] of cases) {
    it(out, () => assert.equal(formatMailbox({ localPart, domain }), out));
  }
  it("round-trips through parsePath", () => {
    for (const text of ['<"x y"@b>', '<"a\\"b"@c>', "<a.b@c>", '<"a@b"@c>', "<jö@x>"]) {
      const r = ok(text, TO8);
      const again = ok(`<${formatMailbox(r.mailbox!)}>`, TO8);
      assert.deepEqual(again.mailbox, r.mailbox);
    }
  });
});

describe("isValidDomain", () => {
  const yes: [string, boolean][] = [
    ["example.com", false],
    ["mail-1.example.co.uk", false],
    ["localhost", false],
    ["EXAMPLE.COM", false],
    ["[192.0.2.1]", false],
    ["[IPv6:2001:db8::1]", false],
    ["bücher.example", true],
    ["xn--bcher-kva.example", false],
  ];
  const no: [string, boolean][] = [
    ["", false],
    ["bücher.example", false],
    ["-a.com", false],
    ["a-.com", false],
    ["a..com", false],
    ["a.com.", false],
    ["a_b.com", false],
    ["a b.com", false],
    ["[999.0.0.1]", false],
    ["[IPv6:zz::1]", false],
    ["x".repeat(64) + ".com", false],
    [Array(10).fill("d".repeat(30)).join("."), false],
    ["exa\u0000mple.com", true],
  ];
  for (const [d, u] of yes) it(`accepts ${d} (utf8=${u})`, () => assert.equal(isValidDomain(d, u), true));
  for (const [d, u] of no) it(`refuses ${JSON.stringify(d.slice(0, 40))} (utf8=${u})`, () => assert.equal(isValidDomain(d, u), false));
});
