import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseMailParameters, parseRcptParameters } from "../../src/smtp/mail-parameters.ts";
import type { MailParameters, ParamError, RcptParameters } from "../../src/smtp/mail-parameters.ts";

const ALL = { size: true, eightBitMime: true, smtputf8: true, dsn: true, auth: true, requireTls: true };
const NONE = { size: false, eightBitMime: false, smtputf8: false, dsn: false, auth: false, requireTls: false };
const BASE: MailParameters = { smtputf8: false, requireTls: false };

function mailOk(rest: string, enabled = ALL): MailParameters {
  const r = parseMailParameters(rest, enabled);
  assert.ok(r.ok, `expected ok for ${JSON.stringify(rest)}: ${!r.ok ? r.text : ""}`);
  return r.params;
}
function mailErr(rest: string, enabled = ALL): ParamError {
  const r = parseMailParameters(rest, enabled);
  assert.ok(!r.ok, `expected error for ${JSON.stringify(rest)}`);
  return r;
}
function rcptOk(rest: string, enabled = { dsn: true }): RcptParameters {
  const r = parseRcptParameters(rest, enabled);
  assert.ok(r.ok, `expected ok for ${JSON.stringify(rest)}: ${!r.ok ? r.text : ""}`);
  return r.params;
}
function rcptErr(rest: string, enabled = { dsn: true }): ParamError {
  const r = parseRcptParameters(rest, enabled);
  assert.ok(!r.ok, `expected error for ${JSON.stringify(rest)}`);
  return r;
}
function is(e: ParamError, code: number, status: string, text?: RegExp): void {
  assert.equal(e.code, code, e.text);
  assert.equal(e.status, status);
  if (text) assert.match(e.text, text);
}

describe("parseMailParameters: general syntax", () => {
  it("no parameters", () => {
    assert.deepEqual(mailOk(""), BASE);
    assert.deepEqual(mailOk("   "), BASE);
    assert.deepEqual(mailOk("", NONE), BASE);
  });
  it("a typical Postfix/Thunderbird line", () => {
    assert.deepEqual(mailOk(" SIZE=2048 BODY=8BITMIME SMTPUTF8"), { ...BASE, size: 2048, body: "8BITMIME", smtputf8: true });
  });
  it("everything at once", () => {
    assert.deepEqual(
      mailOk(" SIZE=10 BODY=7BIT SMTPUTF8 RET=HDRS ENVID=QQ314159 AUTH=<> REQUIRETLS"),
      { size: 10, body: "7BIT", smtputf8: true, ret: "HDRS", envid: "QQ314159", auth: "<>", requireTls: true },
    );
  });
  it("keywords are case-insensitive", () => {
    assert.deepEqual(mailOk(" size=5 Body=8bitmime smtputf8 requiretls"), { ...BASE, size: 5, body: "8BITMIME", smtputf8: true, requireTls: true });
  });
  it("tolerates extra spaces, leading and trailing", () => {
    assert.deepEqual(mailOk("   SIZE=1    BODY=7BIT   "), { ...BASE, size: 1, body: "7BIT" });
    assert.deepEqual(mailOk("SIZE=1"), { ...BASE, size: 1 });
  });
  it("unknown keyword → 555 5.5.4", () => {
    is(mailErr(" FOO=bar"), 555, "5.5.4", /unsupported parameter FOO/);
    is(mailErr(" X-Custom"), 555, "5.5.4", /unsupported parameter X-CUSTOM/);
    is(mailErr(" SIZE=1 XYZ"), 555, "5.5.4", /XYZ/);
  });
  it("not-enabled keywords → 555 5.5.4", () => {
    for (const p of [" SIZE=1", " BODY=8BITMIME", " SMTPUTF8", " RET=FULL", " ENVID=x", " AUTH=<>", " REQUIRETLS"]) {
      is(mailErr(p, NONE), 555, "5.5.4", /unsupported parameter/);
    }
    is(mailErr(" SIZE=1", { ...ALL, size: false }), 555, "5.5.4", /SIZE/);
    is(mailErr(" RET=FULL", { ...ALL, dsn: false }), 555, "5.5.4", /RET/);
  });
  it("RCPT parameters on MAIL → 555", () => {
    is(mailErr(" NOTIFY=NEVER"), 555, "5.5.4", /NOTIFY/);
    is(mailErr(" ORCPT=rfc822;a@b"), 555, "5.5.4", /ORCPT/);
  });
  it("duplicate keyword → 501 5.5.4", () => {
    is(mailErr(" SIZE=1 SIZE=2"), 501, "5.5.4", /duplicate parameter SIZE/);
    is(mailErr(" SMTPUTF8 smtputf8"), 501, "5.5.4", /duplicate/);
    is(mailErr(" BODY=7BIT BODY=8BITMIME"), 501, "5.5.4", /duplicate/);
  });
  it("malformed parameters → 501 5.5.4", () => {
    for (const p of [" =1", " SIZE==1", " SIZE=", " -SIZE=1", " SI_ZE=1", " SIZE=1=2", " ÄÖ=1", " SIZE=1\tBODY=7BIT", " SIZE=1\r\n", " SIZE=1\u0000"]) {
      is(mailErr(p), 501, "5.5.4");
    }
  });
  it("does not echo hostile tokens back", () => {
    assert.doesNotMatch(mailErr(" \u0000<script>").text, /script/);
  });
});

describe("parseMailParameters: SIZE (RFC 1870)", () => {
  const good: [string, number][] = [[" SIZE=0", 0], [" SIZE=1", 1], [" SIZE=10485760", 10485760], [" SIZE=007", 7], [" SIZE=9007199254740991", 9007199254740991]];
  for (const [p, n] of good) it(p, () => assert.equal(mailOk(p).size, n));
  it("non-digits → 501", () => {
    for (const p of [" SIZE=-1", " SIZE=1.5", " SIZE=1e6", " SIZE=0x10", " SIZE=ten", " SIZE=+1", " SIZE=１"]) {
      is(mailErr(p), 501, "5.5.4", /SIZE|malformed/);
    }
  });
  it("missing value → 501", () => is(mailErr(" SIZE"), 501, "5.5.4", /needs a value/));
  it("more than 20 digits → 501", () => is(mailErr(" SIZE=" + "1".repeat(21)), 501, "5.5.4"));
  it("unrepresentably large (up to 20 digits) → 552 5.3.4", () => {
    is(mailErr(" SIZE=99999999999999999999"), 552, "5.3.4");
    is(mailErr(" SIZE=9007199254740992"), 552, "5.3.4");
  });
});

describe("parseMailParameters: BODY (RFC 6152)", () => {
  it("7BIT and 8BITMIME, any case", () => {
    assert.equal(mailOk(" BODY=7BIT").body, "7BIT");
    assert.equal(mailOk(" BODY=8BITMIME").body, "8BITMIME");
    assert.equal(mailOk(" BODY=8bitMIME").body, "8BITMIME");
    assert.equal(mailOk(" BODY=7bit").body, "7BIT");
  });
  it("BINARYMIME → 555 (CHUNKING/BINARYMIME not offered)", () => {
    is(mailErr(" BODY=BINARYMIME"), 555, "5.5.4", /BINARYMIME/);
  });
  it("other values → 501", () => {
    for (const p of [" BODY=8BIT", " BODY=QUOTED-PRINTABLE", " BODY", " BODY=7BIT,8BITMIME"]) is(mailErr(p), 501, "5.5.4");
  });
});

describe("parseMailParameters: SMTPUTF8 and REQUIRETLS", () => {
  it("flags", () => {
    assert.equal(mailOk(" SMTPUTF8").smtputf8, true);
    assert.equal(mailOk(" REQUIRETLS").requireTls, true);
    assert.equal(mailOk("").smtputf8, false);
  });
  it("take no value → 501", () => {
    is(mailErr(" SMTPUTF8=yes"), 501, "5.5.4", /no value/);
    is(mailErr(" REQUIRETLS=1"), 501, "5.5.4", /no value/);
  });
});

describe("parseMailParameters: RET and ENVID (RFC 3461)", () => {
  it("RET=FULL|HDRS, any case", () => {
    assert.equal(mailOk(" RET=FULL").ret, "FULL");
    assert.equal(mailOk(" RET=hdrs").ret, "HDRS");
  });
  it("bad RET → 501", () => {
    for (const p of [" RET", " RET=NONE", " RET=FULL,HDRS", " RET=HEADERS"]) is(mailErr(p), 501, "5.5.4");
  });
  it("ENVID is xtext-decoded", () => {
    assert.equal(mailOk(" ENVID=QQ314159").envid, "QQ314159");
    assert.equal(mailOk(" ENVID=id+2B1+3D2").envid, "id+1=2");
    assert.equal(mailOk(" ENVID=a+20b").envid, "a b");
  });
  it("ENVID of 100 characters is fine, 101 is not", () => {
    assert.equal(mailOk(" ENVID=" + "x".repeat(100)).envid, "x".repeat(100));
    is(mailErr(" ENVID=" + "x".repeat(101)), 501, "5.5.4", /100/);
  });
  it("malformed or hostile ENVID → 501", () => {
    for (const p of [" ENVID", " ENVID=+", " ENVID=+zz", " ENVID=a+0D+0Ab", " ENVID=+00", " ENVID=caf+C3+A9", " ENVID=é"]) is(mailErr(p), 501, "5.5.4");
  });
});

describe("parseMailParameters: AUTH (RFC 4954 §5)", () => {
  it("<> kept", () => assert.equal(mailOk(" AUTH=<>").auth, "<>"));
  it("xtext decoded", () => {
    assert.equal(mailOk(" AUTH=e+3Dmc2@example.com").auth, "e=mc2@example.com");
    assert.equal(mailOk(" AUTH=joe@example.com SIZE=1").auth, "joe@example.com");
  });
  it("malformed → 501", () => {
    for (const p of [" AUTH", " AUTH=+", " AUTH=a+0Db", " AUTH=+7F"]) is(mailErr(p), 501, "5.5.4");
  });
});

describe("parseRcptParameters: NOTIFY (RFC 3461 §4.1)", () => {
  it("none", () => {
    assert.deepEqual(rcptOk(""), {});
    assert.deepEqual(rcptOk("  "), {});
    assert.deepEqual(rcptOk("", { dsn: false }), {});
  });
  it("NEVER alone", () => assert.deepEqual(rcptOk(" NOTIFY=NEVER"), { notify: ["NEVER"] }));
  it("lists", () => {
    assert.deepEqual(rcptOk(" NOTIFY=SUCCESS,FAILURE,DELAY"), { notify: ["SUCCESS", "FAILURE", "DELAY"] });
    assert.deepEqual(rcptOk(" NOTIFY=FAILURE"), { notify: ["FAILURE"] });
    assert.deepEqual(rcptOk(" notify=failure,delay"), { notify: ["FAILURE", "DELAY"] });
    assert.deepEqual(rcptOk(" NOTIFY=DELAY,SUCCESS"), { notify: ["DELAY", "SUCCESS"] });
    assert.deepEqual(rcptOk(" NOTIFY=FAILURE,FAILURE"), { notify: ["FAILURE"] });
  });
  it("NEVER combined → 501", () => {
    is(rcptErr(" NOTIFY=NEVER,SUCCESS"), 501, "5.5.4", /NEVER/);
    is(rcptErr(" NOTIFY=FAILURE,NEVER"), 501, "5.5.4", /NEVER/);
    is(rcptErr(" NOTIFY=NEVER,NEVER"), 501, "5.5.4", /NEVER/);
  });
  it("malformed → 501", () => {
    for (const p of [" NOTIFY", " NOTIFY=ALWAYS", " NOTIFY=SUCCESS,", " NOTIFY=,FAILURE", " NOTIFY=SUCCESS,,DELAY", " NOTIFY=SUCCESS;FAILURE"]) {
      is(rcptErr(p), 501, "5.5.4");
    }
  });
  it("not enabled, unknown, or a MAIL parameter → 555", () => {
    is(rcptErr(" NOTIFY=NEVER", { dsn: false }), 555, "5.5.4", /NOTIFY/);
    is(rcptErr(" SIZE=1"), 555, "5.5.4", /SIZE/);
    is(rcptErr(" FOO"), 555, "5.5.4", /FOO/);
  });
  it("duplicate → 501", () => is(rcptErr(" NOTIFY=NEVER NOTIFY=NEVER"), 501, "5.5.4", /duplicate/));
});

describe("parseRcptParameters: ORCPT (RFC 3461 §4.2)", () => {
  it("rfc822, xtext decoded", () => {
    assert.deepEqual(rcptOk(" ORCPT=rfc822;bob@example.com"), { orcpt: "rfc822;bob@example.com" });
    assert.deepEqual(rcptOk(" ORCPT=RFC822;bob+2Blists@example.com"), { orcpt: "rfc822;bob+lists@example.com" });
    assert.deepEqual(rcptOk(" ORCPT=rfc822;+22john+20doe+22@example.com"), { orcpt: 'rfc822;"john doe"@example.com' });
  });
  it("utf-8 (RFC 6533)", () => {
    assert.deepEqual(rcptOk(" ORCPT=utf-8;j\\x{F6}ran@example.se"), { orcpt: "utf-8;jöran@example.se" });
    assert.deepEqual(rcptOk(" ORCPT=UTF-8;jöran@bücher.example"), { orcpt: "utf-8;jöran@bücher.example" });
  });
  it("with NOTIFY, any order", () => {
    assert.deepEqual(rcptOk(" NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b"), { notify: ["SUCCESS", "FAILURE"], orcpt: "rfc822;a@b" });
    assert.deepEqual(rcptOk("  ORCPT=rfc822;a@b   NOTIFY=NEVER  "), { notify: ["NEVER"], orcpt: "rfc822;a@b" });
  });
  it("500 characters fine, 501 not", () => {
    const v = "rfc822;" + "a".repeat(493);
    assert.equal(v.length, 500);
    assert.ok(rcptOk(" ORCPT=" + v).orcpt);
    is(rcptErr(" ORCPT=" + v + "a"), 501, "5.5.4", /500/);
  });
  it("malformed → 501", () => {
    for (const p of [
      " ORCPT",
      " ORCPT=bob@example.com",
      " ORCPT=x400;c=US",
      " ORCPT=;a@b",
      " ORCPT=rfc822;",
      " ORCPT=rfc822;a+0D+0Ab",
      " ORCPT=rfc822;a+zz",
      " ORCPT=rfc822;jöran@x",
      " ORCPT=utf-8;a\\x{0}b",
      " ORCPT=utf-8;a\\x{D800}",
    ]) {
      is(rcptErr(p), 501, "5.5.4");
    }
  });
  it("not enabled → 555", () => is(rcptErr(" ORCPT=rfc822;a@b", { dsn: false }), 555, "5.5.4"));
  it("duplicate → 501", () => is(rcptErr(" ORCPT=rfc822;a@b ORCPT=rfc822;c@d"), 501, "5.5.4", /duplicate/));
});
