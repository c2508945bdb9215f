/**
 * The DNSBL check against a real DNS server on loopback (the wire protocol,
 * Petrel's resolver and its cache), stage by stage with no SMTP socket.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock, systemClock } from "../../../src/mail/clock.ts";
import { createResolver, type ClosableResolver } from "../../../src/dns/resolver.ts";
import { Dnsbl, type DnsblSettings } from "../../../src/policy/checks/dnsbl.ts";
import { parseSite } from "../../../src/config/dnsbl-sites.ts";
import type { DnsblSite } from "../../../src/policy/dnsbl-sites.ts";
import type { CheckResult } from "../../../src/policy/check.ts";
import { replyText } from "../../../src/smtp/reply.ts";
import { startDnsServer, type TestDnsServer } from "../../support/dns-server.ts";
import { client, mailbox, memoryLogger, session, transaction, WARN, type LogLine } from "../stage-facts.ts";

const V6_LOOPBACK = `1${".0".repeat(31)}`;
let dns: TestDnsServer;
const resolvers: ClosableResolver[] = [];

before(async () => {
  dns = await startDnsServer({
    "bl.test": { SOA: { minimum: 60 } },
    "2.0.0.127.bl.test": { A: ["127.0.0.2"], TXT: ["listed for testing"] },
    "4.0.0.127.bl.test": { A: ["127.0.0.10"] },
    "5.0.0.127.bl.test": { A: ["127.0.0.2"] },
    "6.0.0.127.bl.test": { A: ["127.255.255.254"] },
    "7.0.0.127.bl.test": { A: ["192.0.2.1"] },
    [`${V6_LOOPBACK}.bl.test`]: { A: ["127.0.0.2"] },
    "other.test": { SOA: { minimum: 60 } },
    "2.0.0.127.other.test": { A: ["127.0.0.3"] },
    "8.0.0.127.other.test": { A: ["127.0.0.2"] },
    "wl.test": { SOA: { minimum: 60 } },
    "5.0.0.127.wl.test": { A: ["127.0.10.1"] },
  });
});

after(async () => {
  for (const r of resolvers) r.close();
  await dns.close();
});

function sites(...texts: string[]): DnsblSite[] {
  return texts.map((t) => {
    const r = parseSite(t);
    if (!r.ok) throw new Error(r.reason);
    return r.value;
  });
}

function dnsbl(over: Partial<DnsblSettings> & { clock?: ManualClock } = {}) {
  const resolver = createResolver({ servers: [dns.server], timeout: 5000, tries: 1 });
  resolvers.push(resolver);
  const { log, lines } = memoryLogger();
  const settings: DnsblSettings = {
    sites: sites("bl.test"), threshold: 1, timeout: 5000, rejectAt: "connect", roles: ["mx"], exempt: [], ...over,
  };
  return { lines, resolver, check: new Dnsbl(settings, { resolver, clock: over.clock ?? systemClock, log }) };
}

function said(r: CheckResult | void | undefined): string {
  const v = r?.verdict;
  if (v === undefined || v.action === "accept") return "accept";
  return v.action === "reject" || v.action === "tempfail" ? `${v.action} ${replyText(v.reply)}` : v.action;
}

async function atConnect(check: Dnsbl, address: string, role: "mx" | "submission" = "mx"): Promise<string> {
  return said(await check.open(client(address, role)).connect?.());
}

const warnings = (lines: LogLine[]) => lines.filter((l) => l.level === WARN);

test("a listed client is refused at connect with 554 5.7.1 naming the list; a clean one (NXDOMAIN) is accepted", async () => {
  const { check, lines } = dnsbl();
  assert.equal(await atConnect(check, "127.0.0.2"), "reject 554 5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test");
  assert.equal(await atConnect(check, "127.0.0.3"), "accept");
  const listed = lines.find((l) => l.msg === "client listed by DNS blocklists");
  assert.deepEqual(listed?.listedBy, [{ list: "bl.test", answers: ["127.0.0.2"], weight: 1 }]);
  assert.equal(listed?.client, "127.0.0.2");
  assert.equal(listed?.score, 1);
  assert.ok(dns.queries.some((q) => q.name === "2.0.0.127.bl.test" && q.type === "A"));
});

test("IPv6 clients are looked up by nibbles (RFC 5782 §2.4); IPv4-mapped clients as IPv4", async () => {
  const { check } = dnsbl();
  assert.equal(await atConnect(check, "::1"), "reject 554 5.7.1 Service unavailable; client [::1] blocked using bl.test");
  assert.ok(dns.queries.some((q) => q.name === `${V6_LOOPBACK}.bl.test`));
  assert.equal(await atConnect(check, "::ffff:127.0.0.2"), "reject 554 5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test");
});

test("weights and threshold: one list of two is not enough; both are, and the reply names the heaviest list", async () => {
  const { check, lines } = dnsbl({ sites: sites("bl.test*1", "other.test*2"), threshold: 3 });
  assert.equal(await atConnect(check, "127.0.0.5"), "accept", "listed on bl.test only: score 1");
  assert.equal(lines.find((l) => l.client === "127.0.0.5")?.msg, "client on DNS lists, below the threshold");
  assert.equal(await atConnect(check, "127.0.0.2"), "reject 554 5.7.1 Service unavailable; client [127.0.0.2] blocked using other.test");
});

test("an allowlist's negative weight overrides a blocklist", async () => {
  const { check } = dnsbl({ sites: sites("bl.test*2", "wl.test=127.0.[0..255].[1..3]*-5") });
  assert.equal(await atConnect(check, "127.0.0.5"), "accept", "on bl.test and wl.test: 2 - 5");
  assert.match(await atConnect(check, "127.0.0.2"), /^reject 554 5\.7\.1 /, "on bl.test only");
});

test("answer filters: only the listed return codes count; 127.255.255.x and answers outside 127/8 never do", async () => {
  const { check, lines } = dnsbl({ sites: sites("bl.test=127.0.0.[2..3]") });
  assert.equal(await atConnect(check, "127.0.0.4"), "accept", "127.0.0.10 is outside the filter");
  assert.match(await atConnect(check, "127.0.0.2"), /^reject 554 /);
  const plain = dnsbl();
  assert.match(await atConnect(plain.check, "127.0.0.4"), /^reject 554 /, "without a filter 127.0.0.10 counts");
  assert.equal(await atConnect(plain.check, "127.0.0.6"), "accept", "127.255.255.254: the list refused the query");
  assert.match(String(warnings(plain.lines)[0]?.reason), /refused the query \(127\.255\.255\.254\)/);
  assert.equal(await atConnect(plain.check, "127.0.0.7"), "accept", "192.0.2.1 is no DNSBL answer");
  assert.equal(lines.filter((l) => l.level === WARN).length, 0);
});

test("a DNS failure never blocks: SERVFAIL counts 0 and is logged (once a minute per list), other lists still count", async () => {
  dns.setBehaviour("8.0.0.127.bl.test", "servfail");
  dns.setBehaviour("11.0.0.127.bl.test", "servfail");
  const { check, lines } = dnsbl({ sites: sites("bl.test", "other.test") });
  assert.equal(await atConnect(check, "127.0.0.11"), "accept");
  assert.equal(await atConnect(check, "127.0.0.8"), "reject 554 5.7.1 Service unavailable; client [127.0.0.8] blocked using other.test");
  const w = warnings(lines);
  assert.equal(w.length, 1, "the second failure within a minute is logged at debug");
  assert.equal(w[0].list, "bl.test");
  assert.equal(w[0].client, "127.0.0.11");
  assert.equal(w[0].msg, "DNS list lookup failed; not counted");
  assert.match(String(w[0].reason), /SERVFAIL/);
});

test("all zones are asked at once; one that does not answer within the timeout is left out (fail open), the others count", async () => {
  dns.setBehaviour("9.0.0.127.bl.test", "drop");
  const clock = new ManualClock();
  const { check, lines } = dnsbl({ sites: sites("bl.test", "other.test"), timeout: 2000, clock });
  const pending = check.open(client("127.0.0.9")).connect?.();
  // Both questions are out before either answer is awaited.
  await dns.waitForQuery((q) => q.name === "9.0.0.127.bl.test");
  await dns.waitForQuery((q) => q.name === "9.0.0.127.other.test");
  clock.advance(2000);
  assert.equal(said(await pending), "accept");
  assert.match(String(warnings(lines)[0]?.reason), /no answer within 2000 ms/);

  // The same with a listing that did answer in time (from the resolver's cache, so it is in before the clock moves).
  const second = dnsbl({ sites: sites("bl.test", "other.test"), timeout: 2000, clock });
  assert.equal((await second.resolver.resolveRecords("2.0.0.127.other.test", "A")).kind, "records");
  dns.setBehaviour("2.0.0.127.bl.test", "drop");
  try {
    const asked = dns.queries.length;
    const p = second.check.open(client("127.0.0.2")).connect?.();
    await dns.waitForQuery((q) => q.name === "2.0.0.127.bl.test" && dns.queries.indexOf(q) >= asked);
    clock.advance(2000);
    assert.equal(said(await p), "reject 554 5.7.1 Service unavailable; client [127.0.0.2] blocked using other.test");
  } finally {
    dns.setBehaviour("2.0.0.127.bl.test", undefined);
  }
});

test("while an allowlist's answer is missing a client is not refused", async () => {
  const clock = new ManualClock();
  const { check, resolver } = dnsbl({ sites: sites("bl.test", "wl.test*-5"), timeout: 1000, clock });
  assert.equal((await resolver.resolveRecords("2.0.0.127.bl.test", "A")).kind, "records"); // in the cache: answered at once
  dns.setBehaviour("2.0.0.127.wl.test", "drop");
  try {
    const p = check.open(client("127.0.0.2")).connect?.();
    await dns.waitForQuery((q) => q.name === "2.0.0.127.wl.test");
    clock.advance(1000);
    assert.equal(said(await p), "accept");
  } finally {
    dns.setBehaviour("2.0.0.127.wl.test", undefined);
  }
});

test("rejectAt rcpt: the lookup starts at connect, each RCPT is refused, an authenticated client is not", async () => {
  const { check } = dnsbl({ rejectAt: "rcpt", sites: sites("other.test") });
  const c = client("127.0.0.2");
  const s = check.open(c);
  assert.equal(s.connect?.(), undefined, "nothing to say at connect");
  await dns.waitForQuery((q) => q.name === "2.0.0.127.other.test");
  const rcpt = (user: string | null) => s.rcpt?.(session(c, user), transaction("<a@example.org>"), mailbox("<b@example.test>")!, {});
  assert.equal(said(await rcpt(null)), "reject 554 5.7.1 Service unavailable; client [127.0.0.2] blocked using other.test");
  assert.equal(said(await rcpt(null)), "reject 554 5.7.1 Service unavailable; client [127.0.0.2] blocked using other.test");
  assert.equal(said(await rcpt("alice@example.test")), "accept");
});

test("only the configured roles are looked up (mx by default), exempt networks never, and answers are cached", async () => {
  const { check } = dnsbl({ exempt: ["127.0.0.2"], sites: sites("bl.test") });
  const before = dns.queries.length;
  assert.equal(await atConnect(check, "127.0.0.2"), "accept");
  assert.equal(await atConnect(check, "127.0.0.4", "submission"), "accept");
  assert.equal(dns.queries.length, before, "no question asked");
  assert.match(await atConnect(check, "127.0.0.4"), /^reject /);
  const asked = dns.queries.length;
  assert.match(await atConnect(check, "127.0.0.4"), /^reject /);
  assert.equal(dns.queries.length, asked, "the second connection is answered from the resolver's cache");
});

test("the name shown for a site hides its query key", async () => {
  const [s] = sites("bl.test");
  const { check } = dnsbl({ sites: [{ ...s, name: "public-name.example" }] });
  assert.equal(await atConnect(check, "127.0.0.2"), "reject 554 5.7.1 Service unavailable; client [127.0.0.2] blocked using public-name.example");
});
