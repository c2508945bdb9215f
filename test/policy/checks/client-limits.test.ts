/**
 * The client-limits check as an SMTP worker and a cluster node use it, driven directly: the
 * primary's verdict `banned` refuses at connect; the primary's answer to a failed AUTH decides the
 * ban of a connection it counted (its count has every worker's failures), the worker's own count
 * when it cannot be asked or when the client came through a PROXY peer (verdict `local`); bans
 * shared by a cluster refuse at connect and end a session at its next failure, and every failure
 * is told to them with the configured limit. Without these options the check is as it was
 * (test/e2e/robust-limits.test.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientLimits, clientLimitsCheck, type ClientLimitsCheckOptions, type SharedBans } from "../../../src/policy/checks/client-limits.ts";
import type { CheckResult, CheckSession } from "../../../src/policy/check.ts";
import { ManualClock } from "../../../src/mail/clock.ts";
import { client, session } from "../stage-facts.ts";

const LIMITS = { connections: 100, connectionsPerClient: 10, authFailuresPerConnection: 3, authFailuresPerClient: 2, authBanTime: 60_000 };
const FAILED = { mechanism: "PLAIN", user: null };

async function open(options: Partial<ClientLimitsCheckOptions>, address = "192.0.2.7"): Promise<CheckSession> {
  return clientLimitsCheck({ ...LIMITS, clock: new ManualClock(), ...options }).open(client(address, "submission", true));
}

async function failed(s: CheckSession, address = "192.0.2.7"): Promise<CheckResult | undefined> {
  return (await s.auth!(session(client(address, "submission", true)), FAILED)) ?? undefined;
}

const code = (r: CheckResult | void | undefined) => (r?.verdict && "reply" in r.verdict ? `${r.verdict.reply.code} ${r.verdict.reply.status ?? ""}`.trim() : "none");

test("the primary's verdict 'banned' refuses at connect with 421 4.7.0", async () => {
  const s = await open({ primaryVerdict: () => "banned" });
  const r = await s.connect!();
  assert.equal(code(r as CheckResult), "421 4.7.0");
  assert.match(JSON.stringify(r), /too many failed authentications from your address/);
});

test("a connection the primary counted: its answer bans at the first failure here; no answer falls back to this worker's count", async () => {
  const told: string[] = [];
  const s = await open({ primaryVerdict: () => "ok", primaryAuthFailed: async (a) => (told.push(a), true) });
  assert.equal(await s.connect!(), undefined);
  assert.equal(code(await failed(s)), "421 4.7.0", "banned by the primary's count though this worker saw one failure");
  assert.deepEqual(told, ["192.0.2.7"]);

  const gone = await open({ primaryVerdict: () => "ok", primaryAuthFailed: async () => undefined });
  assert.equal(code(await failed(gone)), "none");
  assert.equal(code(await failed(gone)), "421 4.7.0", "this worker's own count: 2 of 2");

  const notYet = await open({ primaryVerdict: () => "ok", primaryAuthFailed: async () => false });
  assert.equal(code(await failed(notYet)), "none");
  assert.equal(code(await failed(notYet)), "none", "the primary's count decides, not this worker's 2");
  assert.equal(code(await failed(notYet)), "421 4.7.0", "authFailuresPerConnection still ends the session");
});

test("behind a PROXY peer (verdict 'local'): this worker's count or the primary's, whichever bans first", async () => {
  const local = await open({ primaryVerdict: () => "local", primaryAuthFailed: async () => false });
  assert.equal(code(await failed(local)), "none");
  assert.equal(code(await failed(local)), "421 4.7.0", "banned by this worker's count of 2");
  const primary = await open({ primaryVerdict: () => "local", primaryAuthFailed: async () => true });
  assert.equal(code(await failed(primary)), "421 4.7.0", "banned by the primary's count");
});

test("shared bans: refused at connect, a session ended at its next failure, and every failure told with the limits", () => {
  const told: unknown[] = [];
  const banned = new Set<string>();
  const shared: SharedBans = { isBanned: (a) => banned.has(a), authFailed: (a, limit) => void told.push([a, limit]) };
  const clock = new ManualClock();
  const limits = new ClientLimits({ ...LIMITS, authFailuresPerClient: 5, clock, shared });
  assert.equal(limits.admit("192.0.2.8"), "ok");
  assert.equal(limits.authFailed("192.0.2.8"), false);
  assert.deepEqual(told, [["192.0.2.8", { failures: 5, banTime: 60_000 }]]);
  banned.add("192.0.2.8");
  assert.equal(limits.authFailed("192.0.2.8"), true, "banned elsewhere: this failure ends the session");
  assert.equal(limits.admit("192.0.2.8"), "banned");
  assert.equal(limits.admit("192.0.2.9"), "ok");
  banned.clear();
  assert.equal(limits.admit("192.0.2.8"), "ok", "the shared ban is over; this node's own count (2 of 5) bans nothing");
});

test("configure (a reload): new limits apply, the counts so far stay", () => {
  const clock = new ManualClock();
  const limits = new ClientLimits({ ...LIMITS, authFailuresPerClient: 3, clock });
  assert.equal(limits.admit("192.0.2.1"), "ok");
  assert.equal(limits.authFailed("192.0.2.1"), false);
  assert.equal(limits.authFailed("192.0.2.1"), false);
  limits.configure({ ...LIMITS, authFailuresPerClient: 4, connections: 1 });
  assert.equal(limits.connections, 1);
  assert.equal(limits.admit("192.0.2.2"), "server-full", "the connection counted before the reload still counts");
  assert.equal(limits.authFailed("192.0.2.1"), false, "3 of 4");
  assert.equal(limits.authFailed("192.0.2.1"), true, "4 of 4");
  clock.advance(60_001);
  assert.equal(limits.isBanned("192.0.2.1"), false, "the injected clock still rules after configure");
});
