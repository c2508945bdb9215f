import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createResolver } from "../../src/dns/resolver.ts";
import { PolicyCache } from "../../src/mta-sts/sts-cache.ts";
import { mxMatches, StsPolicies } from "../../src/mta-sts/sts-policies.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { policyText, startPolicyServer, type PolicyServer } from "../support/policy-server.ts";
import { createTestCa, issue, type TestCa } from "../support/test-ca.ts";

/**
 * MTA-STS policy discovery as a sender (RFC 8461 §3, §5.1): the TXT record, the HTTPS fetch
 * from a real loopback policy server with certificates from a test CA, the cache on disk.
 */

let ca: TestCa;
let web: PolicyServer;
let dns: TestDnsServer;
const dirs: string[] = [];
const DOMAINS = ["a", "b", "c", "d", "e", "f"];
/** The `_mta-sts` TXT record of each test domain (undefined: none published). */
const records = new Map<string, string | undefined>(DOMAINS.map((d) => [d, "v=STSv1; id=20260101;"]));

function publish(d: string, txt: string | undefined): void {
  records.set(d, txt);
  const zone: Record<string, object> = {};
  for (const [x, value] of records) {
    if (value !== undefined) zone[`_mta-sts.${x}.test`] = { TXT: [value] };
    zone[`mta-sts.${x}.test`] = { A: ["127.0.0.1"] };
  }
  dns.setZone(zone);
}

before(async () => {
  ca = await createTestCa();
  web = await startPolicyServer(await ca.issue(DOMAINS.map((d) => `mta-sts.${d}.test`)));
  dns = await startDnsServer({});
  publish("a", records.get("a"));
});
after(async () => {
  await web?.close();
  await dns?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function policies(options: { clock?: ManualClock; dir?: string; ca?: string } = {}) {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "petrel-sts-")));
  dirs.push(dir);
  const resolver = createResolver({ servers: [dns.server], cacheSize: 0 });
  const clock = options.clock ?? new ManualClock(Date.now());
  const errors: string[] = [];
  const sts = new StsPolicies({
    resolver, clock, cache: new PolicyCache({ dir, onError: (m) => errors.push(m) }),
    fetch: { port: web.port, ca: options.ca ?? ca.cert, timeoutMs: 5000 }, onError: (m) => errors.push(m),
  });
  return { sts, dir, clock, errors, resolver };
}

test("an enforce policy is fetched over verified HTTPS, cached on disk, and not fetched again while its id stays", async (t) => {
  web.serve("mta-sts.a.test", { body: policyText("enforce", ["mx.a.test", "*.mx.a.test"], 86400) });
  const { sts, dir, resolver } = await policies();
  t.after(() => resolver.close());
  const r = await sts.policyFor("a.test");
  assert.equal(r.kind, "policy");
  assert.ok(r.kind === "policy");
  assert.equal(r.policy.mode, "enforce");
  assert.deepEqual(r.policy.mx, ["mx.a.test", "*.mx.a.test"]);
  assert.deepEqual(r.policy.lines, ["version: STSv1", "mode: enforce", "mx: mx.a.test", "mx: *.mx.a.test", "max_age: 86400"]);
  assert.equal(r.policy.id, "20260101");
  assert.equal(r.failure, undefined);
  const fetches = web.requests.filter((h) => h === "mta-sts.a.test").length;
  assert.equal(fetches, 1);
  await sts.policyFor("a.test");
  assert.equal(web.requests.filter((h) => h === "mta-sts.a.test").length, 1, "same id: the cached policy is used");
  assert.deepEqual(await readdir(dir), ["a.test.json"]);
  const saved = JSON.parse(await readFile(join(dir, "a.test.json"), "utf8"));
  assert.equal(saved.expiresAt - saved.fetchedAt, 86400_000);

  assert.ok(mxMatches(r.policy, "mx.a.test"));
  assert.ok(mxMatches(r.policy, "eu.mx.a.test"), "a wildcard matches one label");
  assert.ok(!mxMatches(r.policy, "a.b.mx.a.test"), "but not two");
  assert.ok(!mxMatches(r.policy, "mx.evil.test"));
});

test("a changed TXT id makes the policy be fetched again; mode none withdraws it", async (t) => {
  web.serve("mta-sts.b.test", { body: policyText("enforce", ["mx.b.test"]) });
  const { sts, resolver } = await policies();
  t.after(() => resolver.close());
  assert.equal((await sts.policyFor("b.test")).kind, "policy");
  web.serve("mta-sts.b.test", { body: policyText("none", []) });
  assert.equal((await sts.policyFor("b.test")).kind, "policy", "same id: no fetch, the cached policy holds");
  publish("b", "v=STSv1; id=20260202;");
  const r = await sts.policyFor("b.test");
  assert.equal(r.kind, "none", "the new policy says mode none");
  assert.equal(web.requests.filter((h) => h === "mta-sts.b.test").length, 2);
});

test("across a restart: the policy host down and the TXT record gone, the cached enforce policy still applies", async (t) => {
  web.serve("mta-sts.c.test", { body: policyText("enforce", ["mx.c.test"]) });
  const first = await policies();
  t.after(() => first.resolver.close());
  assert.equal((await first.sts.policyFor("c.test")).kind, "policy");
  // A new process on the same data directory; the policy host refuses, DNS has lost the record.
  web.serve("mta-sts.c.test", { status: 500, body: "down" });
  publish("c", undefined);
  const second = await policies({ dir: first.dir, clock: new ManualClock(Date.now() + 3600_000) });
  t.after(() => second.resolver.close());
  const r = await second.sts.policyFor("c.test");
  assert.ok(r.kind === "policy" && r.policy.mode === "enforce" && r.policy.mx[0] === "mx.c.test", JSON.stringify(r));
  // Once max_age has passed the policy no longer applies.
  publish("c", "v=STSv1; id=20260303;");
  const third = await policies({ dir: first.dir, clock: new ManualClock(Date.now() + 2 * 86400_000) });
  t.after(() => third.resolver.close());
  const late = await third.sts.policyFor("c.test");
  assert.equal(late.kind, "none");
  assert.equal(late.failure?.resultType, "sts-policy-fetch-error");
  assert.match(late.failure?.reason ?? "", /HTTP status 500/);
});

test("a policy host with an expired, untrusted or misnamed certificate: no policy, reported as sts-webpki-invalid", async (t) => {
  web.serve("mta-sts.d.test", { body: policyText("enforce", ["mx.d.test"]) });
  const cases = [
    ["expired", await ca.issue(["mta-sts.d.test"], { expired: true }), /CERT_HAS_EXPIRED/],
    ["self-signed", await issue(["mta-sts.d.test"]), /DEPTH_ZERO_SELF_SIGNED_CERT/],
    ["another name", await ca.issue(["www.d.test"]), /ERR_TLS_CERT_ALTNAME_INVALID/],
  ] as const;
  try {
    for (const [what, pair, code] of cases) {
      web.setCertificate(pair);
      const { sts, resolver } = await policies({ ca: ca.cert });
      t.after(() => resolver.close());
      const r = await sts.policyFor("d.test");
      assert.equal(r.kind, "none", what);
      assert.equal(r.failure?.resultType, "sts-webpki-invalid", what);
      assert.match(r.failure?.reason ?? "", code, what);
    }
  } finally {
    web.setCertificate(await ca.issue(DOMAINS.map((d) => `mta-sts.${d}.test`)));
  }
});

test("no redirects, only text/plain, at most 64 KiB, a valid policy body", async (t) => {
  const { sts, resolver, clock } = await policies({ clock: new ManualClock(Date.now()) });
  t.after(() => resolver.close());
  const tries: [object, string, RegExp][] = [
    [{ status: 301, headers: { location: "https://elsewhere.test/" } }, "sts-policy-fetch-error", /301 \(redirects are not followed\)/],
    [{ contentType: "text/html", body: policyText("enforce", ["mx.e.test"]) }, "sts-policy-fetch-error", /not text\/plain/],
    [{ body: `${policyText("enforce", ["mx.e.test"])}${"x: y\r\n".repeat(12000)}` }, "sts-policy-fetch-error", /larger than 65536 bytes/],
    [{ body: "version: STSv1\r\nmode: strict\r\nmx: mx.e.test\r\nmax_age: 60\r\n" }, "sts-policy-invalid", /mode/],
    [{ body: "version: STSv1\r\nmode: enforce\r\nmax_age: 60\r\n" }, "sts-policy-invalid", /mx/],
  ];
  for (const [answer, resultType, reason] of tries) {
    web.serve("mta-sts.e.test", answer);
    clock.advance(600_000); // past the pause after a failed fetch
    const r = await sts.policyFor("e.test");
    assert.equal(r.kind, "none", JSON.stringify(answer).slice(0, 80));
    assert.equal(r.failure?.resultType, resultType);
    assert.match(r.failure?.reason ?? "", reason);
  }
  // A failed fetch is not repeated at once for the same id.
  const before = web.requests.length;
  await sts.policyFor("e.test");
  assert.equal(web.requests.length, before);
});

test("a policy in the second half of its max_age is fetched again in the background when used", async (t) => {
  web.serve("mta-sts.f.test", { body: policyText("testing", ["mx.f.test"], 1000) });
  const clock = new ManualClock(Date.now());
  const { sts, resolver } = await policies({ clock });
  t.after(() => resolver.close());
  const first = await sts.policyFor("f.test");
  assert.ok(first.kind === "policy" && first.policy.mode === "testing");
  clock.advance(600_000); // 600 of 1000 seconds
  const again = await sts.policyFor("f.test");
  assert.ok(again.kind === "policy" && again.policy.expiresAt === first.policy.expiresAt, "the cached policy answers at once");
  await sts.settled();
  assert.equal(web.requests.filter((h) => h === "mta-sts.f.test").length, 2, "refreshed before it expired");
  const later = await sts.policyFor("f.test");
  assert.ok(later.kind === "policy" && later.policy.expiresAt === clock.now() + 1000_000, "the refreshed policy runs max_age from the refresh");
});

test("a domain without an _mta-sts record has no policy and nothing is fetched", async (t) => {
  const { sts, resolver } = await policies();
  t.after(() => resolver.close());
  const before = web.requests.length;
  assert.deepEqual(await sts.policyFor("nopolicy.test"), { kind: "none" });
  assert.equal(web.requests.length, before);
});
