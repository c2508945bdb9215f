import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decodeUtf8AddrXtext, decodeXtext, encodeXtext } from "../../src/smtp/xtext.ts";

describe("decodeXtext (RFC 3461 §4)", () => {
  const good: [string, string][] = [
    ["", ""],
    ["user@example.com", "user@example.com"],
    ["user+2Btag@example.com", "user+tag@example.com"],
    ["a+3Db", "a=b"],
    ["+20leading", " leading"],
    ["QQ6+2Bxyz", "QQ6+xyz"],
    ["<>", "<>"],
    ["+2b", "+"], // lower-case hex tolerated
    ["caf+C3+A9", "café"], // octets decoded as UTF-8
    ["!~", "!~"],
  ];
  for (const [s, out] of good) it(JSON.stringify(s), () => assert.equal(decodeXtext(s), out));

  const bad = ["+", "+2", "+G0", "a+2", "+ 1", "a=b", "a b", "a\u0000b", "a\rb", "é", "+C3", "+FF", "a\u007fb"];
  for (const s of bad) it(`refuses ${JSON.stringify(s)}`, () => assert.equal(decodeXtext(s), null));
});

describe("encodeXtext", () => {
  const cases: [string, string][] = [
    ["user@example.com", "user@example.com"],
    ["a+b=c", "a+2Bb+3Dc"],
    ["a b", "a+20b"],
    ["\r\n", "+0D+0A"],
    ["é", "+C3+A9"],
    ["", ""],
    ["~!", "~!"],
  ];
  for (const [s, out] of cases) it(JSON.stringify(s), () => assert.equal(encodeXtext(s), out));

  it("round-trips every ASCII character and some Unicode", () => {
    let all = "";
    for (let c = 0; c < 128; c++) all += String.fromCharCode(c);
    all += "jöran 用户 😀";
    assert.equal(decodeXtext(encodeXtext(all)), all);
    assert.match(encodeXtext(all), /^[!-~]*$/);
  });
});

describe("decodeUtf8AddrXtext (RFC 6533 §3)", () => {
  const good: [string, string][] = [
    ["user@example.com", "user@example.com"],
    ["j\\x{F6}ran@example.se", "jöran@example.se"],
    ["jöran@bücher.example", "jöran@bücher.example"],
    ["\\x{1F600}@x", "😀@x"],
    ["a\\x{2B}b@x", "a+b@x"],
    ["a+2Bb@x", "a+b@x"],
    ["caf+C3+A9@x", "café@x"],
  ];
  for (const [s, out] of good) it(JSON.stringify(s), () => assert.equal(decodeUtf8AddrXtext(s), out));
  const bad = ["a\\b", "\\x{}", "\\x{110000}", "\\x{D800}", "\\x{1234567}", "a b", "a=b", "a\u0085b", "+C3", "a\u0000"];
  for (const s of bad) it(`refuses ${JSON.stringify(s)}`, () => assert.equal(decodeUtf8AddrXtext(s), null));
});
