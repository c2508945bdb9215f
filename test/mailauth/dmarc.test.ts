import { test } from "node:test";
import assert from "node:assert/strict";
import { checkDmarc, type DmarcInput } from "../../src/mailauth/dmarc.ts";
import type { DkimSignatureResult } from "../../src/mailauth/dkim-verify.ts";
import type { SpfOutcome } from "../../src/mailauth/spf.ts";
import type { Zone } from "../support/dns-server.ts";
import { testDns } from "./helpers.ts";

const zone: Zone = {
  "_dmarc.a.test": { TXT: ["v=DMARC1; p=reject; sp=quarantine; np=reject; rua=mailto:dmarc@a.test"] },
  "a.test": { A: ["192.0.2.1"] },
  "sub.a.test": { A: ["192.0.2.2"] },
  "_dmarc.strict.test": { TXT: ["v=DMARC1; p=reject; adkim=s; aspf=s"] },
  "_dmarc.pct.test": { TXT: ["v=DMARC1; p=reject; pct=25"] },
  "_dmarc.testing.test": { TXT: ["v=DMARC1; p=quarantine; t=y"] },
  "_dmarc.none.test": { TXT: ["v=DMARC1; p=none; rua=mailto:d@none.test"] },
  "_dmarc.two.test": { TXT: ["v=DMARC1; p=reject", "v=DMARC1; p=none"] },
  "_dmarc.sf.test": { TXT: ["v=DMARC1; p=reject"] },
  // A public suffix that says so itself (RFC 9989 psd=y), as a PSL "private" entry would.
  "_dmarc.pages.test": { TXT: ["v=DMARC1; p=reject; psd=y"] },
  "alice.pages.test": { A: ["192.0.2.3"] },
};

const spf = (domain: string, result: SpfOutcome["result"] = "pass"): SpfOutcome => ({
  result, identity: "mailfrom", domain, comment: "", authResults: `spf=${result}`, receivedSpf: "", lookups: { count: 0, void: 0 },
});
const dkim = (domain: string, result: DkimSignatureResult["result"] = "pass"): DkimSignatureResult => ({
  result, domain, selector: "s", algorithm: "rsa-sha256", testing: false, authResults: `dkim=${result}`,
});
const input = (from: string, parts: Partial<DmarcInput> = {}): DmarcInput => ({ authors: [from], fromFields: 1, dkim: [], ...parts });

test("pass through an aligned DKIM signature or an aligned SPF pass; fail when only other domains pass", async (t) => {
  const { mailauth } = await testDns(t, zone);
  const viaDkim = await checkDmarc(input("alice@a.test", { dkim: [dkim("a.test")], spf: spf("other.test") }), mailauth);
  assert.equal(viaDkim.result, "pass");
  assert.deepEqual(viaDkim.aligned, { dkim: "a.test" });
  assert.equal(viaDkim.authResults, "dmarc=pass (p=REJECT sp=QUARANTINE) policy.dmarc=reject header.from=a.test");
  const viaSpf = await checkDmarc(input("alice@a.test", { spf: spf("a.test") }), mailauth);
  assert.equal(viaSpf.result, "pass");
  assert.deepEqual(viaSpf.aligned, { spf: "a.test" });

  const forged = await checkDmarc(input("ceo@a.test", { dkim: [dkim("evil.test")], spf: spf("evil.test") }), mailauth);
  assert.equal(forged.result, "fail");
  assert.equal(forged.policy, "reject");
  assert.equal(forged.authResults, "dmarc=fail (p=REJECT sp=QUARANTINE) policy.dmarc=reject header.from=a.test");
  const failing = await checkDmarc(input("ceo@a.test", { dkim: [dkim("a.test", "fail")], spf: spf("a.test", "softfail") }), mailauth);
  assert.equal(failing.result, "fail", "aligned but not passing");
});

test("relaxed alignment accepts the organizational domain's subdomains; adkim=s and aspf=s need the exact domain", async (t) => {
  const { mailauth } = await testDns(t, zone);
  const relaxed = await checkDmarc(input("alice@a.test", { dkim: [dkim("mail.a.test")], spf: spf("bounces.a.test") }), mailauth);
  assert.equal(relaxed.result, "pass");
  assert.deepEqual(relaxed.aligned, { spf: "bounces.a.test", dkim: "mail.a.test" });
  const strict = await checkDmarc(input("alice@strict.test", { dkim: [dkim("mail.strict.test")], spf: spf("bounces.strict.test") }), mailauth);
  assert.equal(strict.result, "fail");
  assert.equal(strict.record?.adkim, "s");
  const exact = await checkDmarc(input("alice@strict.test", { dkim: [dkim("strict.test")] }), mailauth);
  assert.equal(exact.result, "pass");
});

test("policies: p for the domain, sp for an existing subdomain, np for one that does not exist", async (t) => {
  const { mailauth } = await testDns(t, zone);
  const own = await checkDmarc(input("x@a.test"), mailauth);
  assert.deepEqual([own.result, own.policy, own.policyDomain], ["fail", "reject", "a.test"]);
  const sub = await checkDmarc(input("x@sub.a.test"), mailauth);
  assert.deepEqual([sub.result, sub.policy, sub.policyDomain], ["fail", "quarantine", "a.test"]);
  assert.deepEqual([sub.record?.p, sub.record?.sp, sub.record?.np], ["reject", "quarantine", "reject"]);
  const missing = await checkDmarc(input("x@nonexistent.a.test"), mailauth);
  assert.deepEqual([missing.result, missing.policy], ["fail", "reject"]);
});

test("pct below 100 and t=y apply the next lower policy; p=none asks for nothing", async (t) => {
  const { mailauth } = await testDns(t, zone);
  const pct = await checkDmarc(input("x@pct.test"), mailauth);
  assert.deepEqual([pct.result, pct.record?.pct, pct.policy], ["fail", 25, "quarantine"]);
  assert.equal(pct.authResults, "dmarc=fail (p=REJECT pct=25) policy.dmarc=quarantine header.from=pct.test");
  const testing = await checkDmarc(input("x@testing.test"), mailauth);
  assert.deepEqual([testing.result, testing.record?.testing, testing.policy], ["fail", true, "none"]);
  const none = await checkDmarc(input("x@none.test"), mailauth);
  assert.deepEqual([none.result, none.policy], ["fail", "none"]);
});

test("none: no record (also when two records are published), and no author domain", async (t) => {
  const { mailauth } = await testDns(t, zone);
  const nothing = await checkDmarc(input("x@unknown.test", { spf: spf("unknown.test") }), mailauth);
  assert.deepEqual([nothing.result, nothing.policy, nothing.record], ["none", "none", undefined]);
  assert.equal(nothing.authResults, "dmarc=none header.from=unknown.test");
  assert.equal((await checkDmarc(input("x@two.test"), mailauth)).result, "none", "two records are no record (RFC 9989 §4.10)");
  const noAuthor = await checkDmarc({ authors: [], fromFields: 0, dkim: [] }, mailauth);
  assert.equal(noAuthor.result, "none");
});

test("permerror: two From fields, or From naming two domains; temperror: the policy lookup failed", async (t) => {
  const { mailauth, dns } = await testDns(t, zone);
  const twoFields = await checkDmarc({ authors: ["a@a.test", "b@a.test"], fromFields: 2, dkim: [dkim("a.test")] }, mailauth);
  assert.deepEqual([twoFields.result, twoFields.reason], ["permerror", "more than one From field"]);
  assert.equal(twoFields.authResults, "dmarc=permerror (more than one From field)");
  const twoDomains = await checkDmarc({ authors: ["a@a.test", "b@b.test"], fromFields: 1, dkim: [] }, mailauth);
  assert.equal(twoDomains.result, "permerror");
  dns.setBehaviour("_dmarc.sf.test", "servfail");
  const temp = await checkDmarc(input("x@sf.test"), mailauth);
  assert.equal(temp.result, "temperror");
  assert.match(temp.reason!, /SERVFAIL/);
});

test("the organizational domain comes from the DNS Tree Walk, not a suffix list: below a psd=y domain each name is its own", async (t) => {
  const { mailauth, dns } = await testDns(t, zone);
  const other = await checkDmarc(input("x@alice.pages.test", { dkim: [dkim("mallory.pages.test")] }), mailauth);
  assert.deepEqual([other.result, other.policy, other.policyDomain], ["fail", "reject", "pages.test"], "a sibling under the suffix does not align");
  const own = await checkDmarc(input("x@alice.pages.test", { dkim: [dkim("mail.alice.pages.test")] }), mailauth);
  assert.equal(own.result, "pass", "the name under the suffix is the organizational domain");
  const walked = dns.queries.filter((q) => q.type === "TXT").map((q) => q.name);
  assert.ok(walked.includes("_dmarc.alice.pages.test") && walked.includes("_dmarc.pages.test"));
});
