/**
 * AUTH-failure bans with SMTP workers (`workers: 2`): the failures of one address are one count
 * for the server, whichever worker its connections land on, so a client guessing passwords gets
 * `limits.authFailuresPerClient` attempts in all — not that many per worker — and once banned it is
 * refused with 421 4.7.0 at connect on every worker, until the ban's time (the injected clock) is
 * over. Another address is not touched by it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import pino from "pino";
import { start } from "./fixtures/mta-helpers.ts";
import { SmtpClient, failAuth, readyForAuth } from "./fixtures/robust-helpers.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { until } from "../support/until.ts";

const SERVER = "127.0.66.1";
const ATTACKER = "127.0.66.5";
const OTHER = "127.0.66.6";
const BAN_MS = 10 * 60_000;

const authReady = (port: number, from: string) => readyForAuth(port, { host: SERVER, localAddress: from });
const fail = (c: SmtpClient) => failAuth(c);

test("with two workers, AUTH failures spread over both add up to one ban at the limit; then 421 at connect on either worker until it expires", async () => {
  const clock = new ManualClock(Date.now());
  const r = await start({
    workers: 2,
    listeners: [{ address: SERVER, port: 0, role: "mx" }, { address: SERVER, port: 0, role: "submission" }],
    limits: { shutdownGrace: 2, authFailuresPerConnection: 2, authFailuresPerClient: 5, authBanTime: BAN_MS / 1000 },
  }, undefined, pino({ level: "silent" }), { clock });
  try {
    const pool = r.mta.workers!;
    const served = () => pool.status().map((w) => w.connections);
    // Two connections at once land on different workers (the one with fewer open connections).
    const c1 = await authReady(r.submission, ATTACKER);
    const c2 = await authReady(r.submission, ATTACKER);
    assert.deepEqual(pool.status().map((w) => w.sessions), [1, 1], "one connection on each worker");
    // Two failures on each: each connection is closed at its own limit (2), no ban yet (4 of 5).
    await fail(c1);
    await fail(c2);
    await fail(c1);
    assert.match((await c1.read()).text, /^421 4\.7\.0 /);
    await fail(c2);
    assert.match((await c2.read()).text, /^421 4\.7\.0 /);
    await Promise.all([c1.closed, c2.closed]);
    await until(() => pool.status().every((w) => w.sessions === 0), "both sessions released");

    // The fifth failure, on whichever worker: the address is banned by the count of both.
    const c3 = await authReady(r.submission, ATTACKER);
    await fail(c3);
    const banned = await c3.read();
    assert.match(banned.text, /^421 4\.7\.0 /);
    await c3.closed;
    await until(() => pool.status().every((w) => w.sessions === 0), "the third session released");

    // Every new connection from it, on either worker and either listener, is refused at connect.
    const before = served();
    for (let i = 0; i < 4; i++) {
      const c = await SmtpClient.connect(i % 2 === 0 ? r.mx : r.submission, { host: SERVER, localAddress: ATTACKER });
      assert.match(c.greeting!.text, /^421 4\.7\.0 .*authentication/i);
      await c.closed;
      await until(() => pool.status().every((w) => w.sessions === 0), "the refused session released");
    }
    const after = served();
    assert.ok(after.every((n, i) => n > before[i]), `refused connections were served by both workers (${before} → ${after})`);

    // Another address logs in.
    const good = await authReady(r.submission, OTHER);
    assert.match((await good.authPlain("alice@example.test", "alice-password")).text, /^235 /);
    await good.quit();

    // The ban is over after limits.authBanTime (the server's clock), and not a moment before.
    clock.advance(BAN_MS - 1);
    const still = await SmtpClient.connect(r.mx, { host: SERVER, localAddress: ATTACKER });
    assert.match(still.greeting!.text, /^421 4\.7\.0 /);
    await still.closed;
    clock.advance(2);
    const back = await authReady(r.submission, ATTACKER);
    assert.match((await back.authPlain("alice@example.test", "alice-password")).text, /^235 /);
    await back.quit();
  } finally {
    SmtpClient.closeAll();
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});
