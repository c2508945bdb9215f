import { test } from "node:test";
import assert from "node:assert/strict";
import { checkSpfHelo, checkSpfMailFrom, type SpfOptions, type SpfOutcome } from "../../src/mailauth/spf.ts";
import { reverseName, type Zone } from "../support/dns-server.ts";
import { testDns } from "./helpers.ts";

const CLIENT = "127.0.0.5";

const hosts = (prefix: string, n: number, last?: string): Zone =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`h${i + 1}.${prefix}`, { A: [i === n - 1 && last ? last : "192.0.2.1"] }]));
const aTerms = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `a:h${i + 1}.${prefix}`).join(" ");

const zone: Zone = {
  "pass.test": { TXT: [`v=spf1 ip4:${CLIENT} -all`, "google-site-verification=abc"] },
  "soft.test": { TXT: ["v=spf1 ip4:192.0.2.0/24 ~all"] },
  "neutral.test": { TXT: ["v=spf1 ?all"] },
  "nospf.test": { A: ["192.0.2.9"], TXT: ["some other record"] },
  "amx.test": { TXT: ["v=spf1 a mx -all"], A: ["192.0.2.7"], MX: [[10, "mx.amx.test"]] },
  "mx.amx.test": { A: [CLIENT] },
  "v6.test": { TXT: ["v=spf1 ip6:2001:db8::/32 -all"] },
  // include and redirect chains
  "inc.test": { TXT: ["v=spf1 include:_a.inc.test include:_b.inc.test -all"] },
  "_a.inc.test": { TXT: ["v=spf1 ip4:192.0.2.0/24 -all"] },
  "_b.inc.test": { TXT: ["v=spf1 include:_c.inc.test ?all"] },
  "_c.inc.test": { TXT: [`v=spf1 ip4:${CLIENT}/32 -all`] },
  "incnone.test": { TXT: ["v=spf1 include:missing.inc.test -all"] },
  "red.test": { TXT: ["v=spf1 redirect=_r1.red.test"] },
  "_r1.red.test": { TXT: ["v=spf1 ip4:192.0.2.1 redirect=_r2.red.test"] },
  "_r2.red.test": { TXT: [`v=spf1 ip4:${CLIENT} -all`] },
  "rednone.test": { TXT: ["v=spf1 redirect=missing.red.test"] },
  // RFC 7208 §4.6.4: at most 10 DNS-querying terms, at most 2 void lookups
  "ten.test": { TXT: [`v=spf1 ${aTerms("ten.test", 10)} -all`] },
  ...hosts("ten.test", 10, CLIENT),
  "eleven.test": { TXT: [`v=spf1 ${aTerms("eleven.test", 11)} -all`] },
  ...hosts("eleven.test", 11, CLIENT),
  "deep.test": { TXT: ["v=spf1 include:d1.deep.test -all"] },
  ...Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`d${i + 1}.deep.test`, { TXT: [i === 10 ? `v=spf1 ip4:${CLIENT} -all` : `v=spf1 include:d${i + 2}.deep.test -all`] }])),
  "mx11.test": { TXT: ["v=spf1 mx -all"], MX: Array.from({ length: 11 }, (_, i) => [i, `h${i + 1}.mx11.test`] as const) },
  ...hosts("mx11.test", 11, CLIENT),
  "void2.test": { TXT: [`v=spf1 a:gone1.void.test a:gone2.void.test ip4:${CLIENT} -all`] },
  "void3.test": { TXT: [`v=spf1 a:gone1.void.test a:gone2.void.test a:gone3.void.test ip4:${CLIENT} -all`] },
  // macros (RFC 7208 §7)
  "mac.test": { TXT: ["v=spf1 exists:%{i}.%{l}.%{o}._h.%{h} exists:%{ir}.%{v}._spf.%{d} -all exp=why.%{d}"] },
  "127.0.0.5.alice.mac.test._h.mx.client.test": { A: ["127.0.0.2"] },
  "why.mac.test": { TXT: ["%{s} may not send from %{i}"] },
  "macr.test": { TXT: ["v=spf1 exists:%{ir}.%{v}._spf.%{d} -all"] },
  "5.0.0.127.in-addr._spf.macr.test": { A: ["127.0.0.2"] },
  "macdelim.test": { TXT: ["v=spf1 exists:%{l-}.%{d2} -all"] },
  "first.last.macdelim.test": { A: ["127.0.0.2"] },
  "macp.test": { TXT: ["v=spf1 exists:%{p}._p.macp.test -all"] },
  "mail.ptr.test._p.macp.test": { A: ["127.0.0.2"] },
  // ptr (RFC 7208 §5.5): the client's name, validated by its own A record
  "ptr.test": { TXT: ["v=spf1 ptr -all"] },
  [reverseName(CLIENT)]: { PTR: ["mail.ptr.test"] },
  "mail.ptr.test": { A: [CLIENT] },
  // HELO identity
  "mx.helo.test": { TXT: ["v=spf1 a -all"], A: [CLIENT] },
  // failures
  "sf.test": { TXT: ["v=spf1 include:_x.sf.test -all"] },
  "_x.sf.test": { TXT: ["v=spf1 +all"] },
  "slow.test": { TXT: [`v=spf1 ip4:${CLIENT} -all`] },
  "syntax.test": { TXT: ["v=spf1 ip4:127.0.0.300 -all"] },
  "unknown.test": { TXT: ["v=spf1 foo:bar.test -all"] },
  "two.test": { TXT: ["v=spf1 -all", `v=spf1 ip4:${CLIENT} -all`] },
};

async function setup(t: import("node:test").TestContext, resolverOptions: { timeout?: number } = {}) {
  const env = await testDns(t, zone, resolverOptions);
  const options: SpfOptions = { resolver: env.mailauth, hostname: "mx.receiver.test" };
  const mailFrom = (from: string | null, ip = CLIENT, helo = "mx.client.test") => checkSpfMailFrom({ ip, helo }, from, options);
  return { ...env, options, mailFrom };
}

const results = (list: SpfOutcome[]) => list.map((r) => r.result);

test("the results: pass, fail, softfail, neutral, none (no record, no domain), through a, mx and ip6", async (t) => {
  const { mailFrom } = await setup(t);
  assert.deepEqual(
    results(await Promise.all([
      mailFrom("alice@pass.test"),
      mailFrom("alice@pass.test", "127.0.0.6"),
      mailFrom("alice@soft.test"),
      mailFrom("alice@neutral.test"),
      mailFrom("alice@nospf.test"),
      mailFrom("alice@nowhere.test"),
      mailFrom("alice@amx.test"),
      mailFrom("alice@v6.test", "2001:db8::5"),
      mailFrom("alice@v6.test", "2001:db9::5"),
    ])),
    ["pass", "fail", "softfail", "neutral", "none", "none", "pass", "pass", "fail"],
  );
});

test("the Authentication-Results resinfo and the Received-SPF field", async (t) => {
  const { mailFrom } = await setup(t);
  const r = await mailFrom("alice@pass.test");
  assert.equal(r.identity, "mailfrom");
  assert.equal(r.domain, "pass.test");
  assert.equal(r.authResults, "spf=pass (mx.receiver.test: domain of alice@pass.test designates 127.0.0.5 as permitted sender) smtp.mailfrom=pass.test");
  assert.equal(
    r.receivedSpf.replace(/\r\n /g, " "),
    'Received-SPF: pass (mx.receiver.test: domain of alice@pass.test designates 127.0.0.5 as permitted sender) client-ip=127.0.0.5; envelope-from="alice@pass.test"; helo=mx.client.test;',
  );
  const fail = await mailFrom("alice@pass.test", "127.0.0.6");
  assert.match(fail.authResults, /^spf=fail \(mx\.receiver\.test: domain of alice@pass\.test does not designate 127\.0\.0\.6 as permitted sender\) smtp\.mailfrom=pass\.test$/);
});

test("include and redirect chains", async (t) => {
  const { mailFrom } = await setup(t);
  const inc = await mailFrom("alice@inc.test");
  assert.equal(inc.result, "pass");
  assert.equal((await mailFrom("alice@inc.test", "127.0.0.6")).result, "fail", "no include matched: the outer -all");
  assert.equal((await mailFrom("alice@incnone.test")).result, "permerror", "an include of a domain without SPF (RFC 7208 §5.2)");
  assert.equal((await mailFrom("alice@red.test")).result, "pass");
  assert.equal((await mailFrom("alice@red.test", "127.0.0.6")).result, "fail");
  assert.equal((await mailFrom("alice@rednone.test")).result, "permerror", "a redirect to a domain without SPF (RFC 7208 §6.1)");
});

test("the 10-lookup limit: ten DNS-querying terms evaluate, the eleventh is permerror, includes count", async (t) => {
  const { mailFrom } = await setup(t);
  const ten = await mailFrom("alice@ten.test");
  assert.equal(ten.result, "pass");
  assert.equal(ten.lookups.count, 10);
  const eleven = await mailFrom("alice@eleven.test");
  assert.equal(eleven.result, "permerror");
  assert.match(eleven.comment, /Too many DNS requests/);
  assert.equal((await mailFrom("alice@deep.test")).result, "permerror", "11 nested includes");
  assert.equal((await mailFrom("alice@mx11.test")).result, "permerror", "mx naming more than 10 hosts");
});

test("the void-lookup limit: two lookups without an answer are fine, a third is permerror", async (t) => {
  const { mailFrom } = await setup(t);
  const two = await mailFrom("alice@void2.test");
  assert.equal(two.result, "pass");
  assert.equal(two.lookups.void, 2);
  const three = await mailFrom("alice@void3.test");
  assert.equal(three.result, "permerror");
  assert.match(three.comment, /Too many void DNS results/);
});

test("macros: %{i} %{l} %{o} %{h} %{ir} %{v} %{d} %{l-} %{d2} in exists:, %{s} in the explanation, %{p} validated through PTR", async (t) => {
  const { mailFrom, dns } = await setup(t);
  const r = await mailFrom("alice@mac.test");
  assert.equal(r.result, "pass");
  assert.ok(dns.queries.some((q) => q.type === "A" && q.name === "127.0.0.5.alice.mac.test._h.mx.client.test"));
  assert.equal((await mailFrom("alice@macr.test")).result, "pass");
  assert.ok(dns.queries.some((q) => q.type === "A" && q.name === "5.0.0.127.in-addr._spf.macr.test"));
  const other = await mailFrom("bob@mac.test", "127.0.0.6");
  assert.equal(other.result, "fail");
  assert.equal(other.explanation, "bob@mac.test may not send from 127.0.0.6");
  assert.equal((await mailFrom("first-last@macdelim.test")).result, "pass", "%{l-}: the local-part split at '-'");
  assert.equal((await mailFrom("alice@macp.test")).result, "pass");
  assert.ok(dns.queries.some((q) => q.type === "PTR" && q.name === "5.0.0.127.in-addr.arpa"));
  assert.ok(dns.queries.some((q) => q.type === "A" && q.name === "mail.ptr.test._p.macp.test"));
  assert.equal((await mailFrom("alice@macp.test", "127.0.0.6")).result, "fail", "%{p} is \"unknown\" without a validated name");
});

test("the ptr mechanism matches a client whose PTR name resolves back to it", async (t) => {
  const { mailFrom } = await setup(t);
  assert.equal((await mailFrom("alice@ptr.test")).result, "pass");
  assert.equal((await mailFrom("alice@ptr.test", "127.0.0.6")).result, "fail");
});

test("HELO: checked on its own, and for a null reverse-path; an address literal is none", async (t) => {
  const { options } = await setup(t);
  const helo = await checkSpfHelo({ ip: CLIENT, helo: "mx.helo.test" }, options);
  assert.equal(helo.result, "pass");
  assert.equal(helo.identity, "helo");
  assert.match(helo.authResults, /^spf=pass .* smtp\.helo=mx\.helo\.test$/);
  assert.doesNotMatch(helo.receivedSpf, /envelope-from/);
  assert.equal((await checkSpfHelo({ ip: "127.0.0.6", helo: "mx.helo.test" }, options)).result, "fail");
  const bounce = await checkSpfMailFrom({ ip: CLIENT, helo: "mx.helo.test" }, null, options);
  assert.equal(bounce.result, "pass");
  assert.equal(bounce.identity, "helo");
  assert.equal(bounce.domain, "mx.helo.test");
  assert.equal((await checkSpfHelo({ ip: CLIENT, helo: "[127.0.0.5]" }, options)).result, "none");
});

test("temperror: SERVFAIL on the record, SERVFAIL inside an include, and a server that never answers", async (t) => {
  const { mailFrom, dns } = await setup(t, { timeout: 100 });
  dns.setBehaviour("_x.sf.test", "servfail");
  const inner = await mailFrom("alice@sf.test");
  assert.equal(inner.result, "temperror");
  assert.match(inner.comment, /SERVFAIL/);
  dns.setBehaviour("sf.test", "servfail");
  assert.equal((await mailFrom("bob@sf.test")).result, "temperror");
  dns.setBehaviour("slow.test", "drop");
  const timeout = await mailFrom("alice@slow.test");
  assert.equal(timeout.result, "temperror");
  assert.match(timeout.comment, /DNS timeout/);
});

test("the time limit of the whole evaluation is temperror", async (t) => {
  const { dns, mailauth } = await setup(t, { timeout: 2000 });
  dns.setBehaviour("slow.test", "drop");
  const r = await checkSpfMailFrom({ ip: CLIENT, helo: "x.test" }, "alice@slow.test", { resolver: mailauth, hostname: "mx.receiver.test", timeLimit: 100 });
  assert.equal(r.result, "temperror");
  assert.match(r.comment, /time limit/);
});

test("permerror: a record with a syntax error, an unknown mechanism, two SPF records", async (t) => {
  const { mailFrom } = await setup(t);
  assert.deepEqual(
    results(await Promise.all([mailFrom("a@syntax.test"), mailFrom("a@unknown.test"), mailFrom("a@two.test")])),
    ["permerror", "permerror", "permerror"],
  );
});
