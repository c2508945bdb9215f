import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../../src/mail/clock.ts";
import { RateLimits, type RateLimitSettings } from "../../../src/policy/checks/rate-limits.ts";
import type { CheckResult, CheckSession } from "../../../src/policy/check.ts";
import { replyText } from "../../../src/smtp/reply.ts";
import { client, mailbox, memoryLogger, noParams, session, transaction, WARN } from "../stage-facts.ts";

const MINUTE = 60_000;
const OFF = { connections: 0, messages: 0, recipients: 0, window: MINUTE };

function settings(over: Partial<RateLimitSettings> = {}): RateLimitSettings {
  return {
    mx: OFF, submission: OFF, user: { messages: 0, recipients: 0, window: MINUTE, exempt: [] },
    exempt: ["127.0.0.0/8", "::1"], ipv6Prefix: 64, trackedKeys: 100_000, ...over,
  };
}

function rateLimits(over: Partial<RateLimitSettings> = {}) {
  const clock = new ManualClock(1000 * MINUTE);
  const { log, lines } = memoryLogger();
  return { clock, lines, check: new RateLimits(settings(over), { log, clock }) };
}

/** The reply of a result as one line, or "accept". */
function said(r: CheckResult | void | undefined): string {
  const v = r?.verdict;
  if (v === undefined || v.action === "accept") return "accept";
  return v.action === "reject" || v.action === "tempfail" ? `${v.action} ${replyText(v.reply)}` : v.action;
}

async function connect(check: RateLimits, address: string, role: "mx" | "submission" | "submissions" = "mx"): Promise<string> {
  return said(await check.open(client(address, role)).connect?.());
}

async function mail(s: CheckSession, address: string, user: string | null = null, role: "mx" | "submission" = "mx"): Promise<string> {
  return said(await s.mail?.(session(client(address, role), user), mailbox("<sender@example.org>"), noParams));
}

async function rcpt(s: CheckSession, address: string, user: string | null = null): Promise<string> {
  return said(await s.rcpt?.(session(client(address), user), transaction("<sender@example.org>"), mailbox("<rcpt@example.test>")!, {}));
}

test("connection rate per client on mx: the connection over the limit gets 421 4.7.0 naming the client; other clients are not affected", async () => {
  const { check, lines } = rateLimits({ mx: { ...OFF, connections: 3 } });
  for (let i = 0; i < 3; i++) assert.equal(await connect(check, "192.0.2.1"), "accept");
  assert.equal(await connect(check, "192.0.2.1"), "tempfail 421 4.7.0 Error: too many connections from 192.0.2.1; try again later");
  assert.equal(await connect(check, "192.0.2.2"), "accept");
  const warned = lines.filter((l) => l.level === WARN);
  assert.equal(warned.length, 1);
  assert.deepEqual(
    { msg: warned[0].msg, group: warned[0].group, kind: warned[0].kind, key: warned[0].key, count: warned[0].count, limit: warned[0].limit, window: warned[0].window },
    { msg: "connections rate limit exceeded", group: "mx", kind: "connections", key: "192.0.2.1", count: 4, limit: 3, window: 60 },
  );
});

test("refused requests count too (Postfix's anvil), the warning is logged once per key and window, and the rate decays", async () => {
  const { check, clock, lines } = rateLimits({ mx: { ...OFF, connections: 2 } });
  await connect(check, "192.0.2.1");
  await connect(check, "192.0.2.1");
  for (let i = 0; i < 5; i++) assert.match(await connect(check, "192.0.2.1"), /^tempfail 421 /);
  assert.equal(lines.filter((l) => l.level === WARN).length, 1);
  // 7 in the window before: at half the next window 3.5 of them still count.
  clock.advance(MINUTE + MINUTE / 2);
  assert.match(await connect(check, "192.0.2.1"), /^tempfail 421 /);
  assert.equal(lines.filter((l) => l.level === WARN).length, 2, "a new window, a new warning");
  clock.advance(2 * MINUTE);
  assert.equal(await connect(check, "192.0.2.1"), "accept");
});

test("mx and submission listeners are counted apart; submissions (465) counts with submission (587)", async () => {
  const { check } = rateLimits({ mx: { ...OFF, connections: 1 }, submission: { ...OFF, connections: 2 } });
  assert.equal(await connect(check, "192.0.2.1", "mx"), "accept");
  assert.equal(await connect(check, "192.0.2.1", "submission"), "accept");
  assert.equal(await connect(check, "192.0.2.1", "submissions"), "accept");
  assert.match(await connect(check, "192.0.2.1", "submissions"), /^tempfail 421 4\.7\.0 /);
  assert.match(await connect(check, "192.0.2.1", "mx"), /^tempfail 421 4\.7\.0 /);
});

test("exempt networks are not counted: loopback by default, IPv4-mapped clients included; a list replaces the default", async () => {
  const { check } = rateLimits({ mx: { ...OFF, connections: 1 } });
  for (const ip of ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"]) {
    for (let i = 0; i < 3; i++) assert.equal(await connect(check, ip), "accept", ip);
  }
  assert.equal(check.stats().keys, 0);
  const custom = rateLimits({ mx: { ...OFF, connections: 1 }, exempt: ["198.51.100.0/24"] }).check;
  assert.equal(await connect(custom, "198.51.100.77"), "accept");
  assert.equal(await connect(custom, "198.51.100.77"), "accept");
  assert.equal(await connect(custom, "127.0.0.1"), "accept");
  assert.match(await connect(custom, "127.0.0.1"), /^tempfail 421 /, "loopback is counted once the list leaves it out");
});

test("an IPv6 client is counted by its /64 (ipv6Prefix), IPv4-mapped addresses as IPv4", async () => {
  const { check } = rateLimits({ mx: { ...OFF, connections: 2 } });
  assert.equal(await connect(check, "2001:db8:1:2::1"), "accept");
  assert.equal(await connect(check, "2001:db8:1:2:ffff:ffff:ffff:ffff"), "accept");
  assert.equal(await connect(check, "2001:db8:1:2::1"), "tempfail 421 4.7.0 Error: too many connections from 2001:db8:1:2::1; try again later");
  assert.equal(await connect(check, "2001:db8:1:3::1"), "accept", "another /64");
  assert.equal(await connect(check, "::ffff:192.0.2.9"), "accept");
  assert.equal(await connect(check, "192.0.2.9"), "accept");
  assert.match(await connect(check, "::ffff:192.0.2.9"), /^tempfail 421 /);
  const per128 = rateLimits({ mx: { ...OFF, connections: 1 }, ipv6Prefix: 128 }).check;
  assert.equal(await connect(per128, "2001:db8:1:2::1"), "accept");
  assert.equal(await connect(per128, "2001:db8:1:2::2"), "accept");
});

test("message rate per client: the MAIL over the limit gets 450 4.7.1 (Postfix: too much mail), on any connection", async () => {
  const { check } = rateLimits({ mx: { ...OFF, messages: 2 } });
  const a = check.open(client("192.0.2.1"));
  assert.equal(await mail(a, "192.0.2.1"), "accept");
  const b = check.open(client("192.0.2.1"));
  assert.equal(await mail(b, "192.0.2.1"), "accept");
  assert.equal(await mail(b, "192.0.2.1"), "tempfail 450 4.7.1 Error: too much mail from 192.0.2.1; try again later");
  assert.equal(await rcpt(b, "192.0.2.1"), "accept", "recipients are not limited");
  assert.equal(await mail(check.open(client("192.0.2.2")), "192.0.2.2"), "accept");
});

test("recipient rate per client: the RCPT over the limit gets 450 4.7.1 (Postfix: too many recipients)", async () => {
  const { check } = rateLimits({ mx: { ...OFF, recipients: 3 } });
  const s = check.open(client("192.0.2.1"));
  assert.equal(await mail(s, "192.0.2.1"), "accept");
  for (let i = 0; i < 3; i++) assert.equal(await rcpt(s, "192.0.2.1"), "accept");
  assert.equal(await rcpt(s, "192.0.2.1"), "tempfail 450 4.7.1 Error: too many recipients from 192.0.2.1; try again later");
});

test("user rates: counted per login whatever the address (loopback included) and listener; other users and exemptUsers are free", async () => {
  const { check, lines } = rateLimits({ user: { messages: 2, recipients: 0, window: MINUTE, exempt: ["robot@example.test"] } });
  const alice = "alice@example.test";
  assert.equal(await mail(check.open(client("192.0.2.1", "submission")), "192.0.2.1", alice, "submission"), "accept");
  assert.equal(await mail(check.open(client("127.0.0.1", "submission")), "127.0.0.1", "Alice@Example.TEST", "submission"), "accept");
  assert.equal(
    await mail(check.open(client("198.51.100.1", "submission")), "198.51.100.1", alice, "submission"),
    "tempfail 450 4.7.1 Error: too much mail from alice@example.test; try again later",
  );
  assert.equal(await mail(check.open(client("192.0.2.1", "submission")), "192.0.2.1", null, "submission"), "accept", "not logged in: not a user's mail");
  assert.equal(await mail(check.open(client("192.0.2.1", "submission")), "192.0.2.1", "bob@example.test", "submission"), "accept");
  for (let i = 0; i < 5; i++) {
    assert.equal(await mail(check.open(client("192.0.2.1", "submission")), "192.0.2.1", "robot@example.test", "submission"), "accept");
  }
  const warned = lines.find((l) => l.level === WARN);
  assert.equal(warned?.group, "user");
  assert.equal(warned?.key, alice);
});

test("user recipient rate: a stolen password cannot send to thousands of recipients a minute", async () => {
  const { check } = rateLimits({ user: { messages: 0, recipients: 100, window: MINUTE, exempt: [] } });
  const s = check.open(client("203.0.113.5", "submission"));
  let accepted = 0;
  let refused = "";
  for (let i = 0; i < 1000; i++) {
    const r = await rcpt(s, "203.0.113.5", "alice@example.test");
    if (r === "accept") accepted++;
    else refused ||= r;
  }
  assert.equal(accepted, 100);
  assert.equal(refused, "tempfail 450 4.7.1 Error: too many recipients from alice@example.test; try again later");
});

test("the client limit is asked first: a refused MAIL does not count against the user", async () => {
  const { check } = rateLimits({ submission: { ...OFF, messages: 1 }, user: { messages: 2, recipients: 0, window: MINUTE, exempt: [] } });
  const s = check.open(client("192.0.2.1", "submission"));
  assert.equal(await mail(s, "192.0.2.1", "alice@example.test", "submission"), "accept");
  assert.equal(await mail(s, "192.0.2.1", "alice@example.test", "submission"), "tempfail 450 4.7.1 Error: too much mail from 192.0.2.1; try again later");
  const t = check.open(client("192.0.2.2", "submission"));
  assert.equal(await mail(t, "192.0.2.2", "alice@example.test", "submission"), "accept", "alice's second message");
  const u = check.open(client("192.0.2.3", "submission"));
  assert.match(await mail(u, "192.0.2.3", "alice@example.test", "submission"), /^tempfail 450 4\.7\.1 Error: too much mail from alice@/);
});

test("a limit of 0 is off and counts nothing", async () => {
  const { check } = rateLimits();
  for (let i = 0; i < 100; i++) {
    const s = check.open(client(`192.0.2.${i}`));
    assert.equal(await connect(check, `192.0.2.${i}`), "accept");
    assert.equal(await mail(s, `192.0.2.${i}`, "alice@example.test"), "accept");
    assert.equal(await rcpt(s, `192.0.2.${i}`, "alice@example.test"), "accept");
  }
  assert.equal(check.stats().keys, 0);
});

test("100,000 distinct clients: the check remembers at most trackedKeys of them", async () => {
  const { check } = rateLimits({ mx: { ...OFF, connections: 5 }, trackedKeys: 10_000 });
  for (let i = 0; i < 100_000; i++) {
    const s = check.open(client(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`));
    assert.equal(s.connect?.(), undefined);
  }
  const { keys, evicted } = check.stats();
  assert.ok(keys <= 10_000, `${keys} keys`);
  assert.equal(keys + evicted, 100_000);
});
