/**
 * The connection cache (client/connection-cache.ts) with real sessions to a
 * scripted server: reuse only under the same key and after RSET, the idle
 * limit (time injected), MAILMAX, sessions ended while idle, shutdown.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type * as net from "node:net";
import { ConnectionCache } from "../../src/client/connection-cache.ts";
import { SmtpConnection } from "../../src/client/smtp-connection.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { startFake, type FakeOptions, type FakeSmtp } from "./fake-smtp.ts";
import { until } from "../support/until.ts";

async function withFake(options: FakeOptions, fn: (f: FakeSmtp, open: () => Promise<SmtpConnection>) => Promise<void>): Promise<void> {
  const f = await startFake(options);
  try {
    await fn(f, () => SmtpConnection.connect({ host: "127.0.0.1", port: f.port, tls: "none", verifyCertificate: false, heloName: "client.test", timeouts: { command: 5000, greeting: 5000 } }));
  } finally {
    await f.close();
  }
}

const tx = { mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }], message: Buffer.from("Subject: t\r\n\r\nhi\r\n") };

describe("connection cache", { timeout: 20_000 }, () => {
  test("a released session is taken again under its key, after RSET; another key gets nothing", async () => {
    await withFake({}, async (f, open) => {
      const cache = new ConnectionCache({ idleMs: 60_000, timer: new ManualClock() });
      const s = await open();
      await s.send(tx);
      await cache.release("k1", s);
      assert.equal(cache.size("k1"), 1);
      assert.equal(await cache.take("k2"), undefined);
      const again = await cache.take("k1");
      assert.equal(again, s);
      assert.equal(f.lines.at(-1), "RSET");
      assert.equal(cache.size(), 0);
      assert.equal(await cache.take("k1"), undefined, "taken sessions leave the cache");
      await cache.release("k1", s);
      await cache.close();
      assert.equal(f.lines.at(-1), "QUIT");
      assert.equal(s.usable, false);
    });
  });

  test("the idle limit ends a session with QUIT (injected time, no waiting)", async () => {
    await withFake({}, async (f, open) => {
      const clock = new ManualClock();
      const cache = new ConnectionCache({ idleMs: 10_000, timer: clock });
      const s = await open();
      await cache.release("k", s);
      clock.advance(9_999);
      assert.equal(cache.size("k"), 1);
      clock.advance(1);
      assert.equal(cache.size("k"), 0);
      await until(() => f.lines.at(-1) === "QUIT", "QUIT");
      assert.equal(await cache.take("k"), undefined);
    });
  });

  test("idleMs 0, a closed cache, an unusable session, or the server's MAILMAX reached: release ends the session", async () => {
    await withFake({ ehlo: "250-fake.test\r\n250-PIPELINING\r\n250 LIMITS MAILMAX=1 RCPTMAX=5\r\n" }, async (f, open) => {
      const off = new ConnectionCache({ idleMs: 0 });
      const a = await open();
      await off.release("k", a);
      assert.equal(a.usable, false);
      assert.equal(f.lines.at(-1), "QUIT");

      const cache = new ConnectionCache({ idleMs: 60_000, timer: new ManualClock() });
      const b = await open();
      assert.deepEqual(b.capabilities.limits, { mailMax: 1, rcptMax: 5 });
      await b.send(tx);
      await cache.release("k", b);
      assert.equal(cache.size("k"), 0, "MAILMAX=1 reached: not kept");
      assert.equal(b.usable, false);

      const c = await open();
      c.close();
      await cache.release("k", c);
      assert.equal(cache.size("k"), 0);

      await cache.close();
      const d = await open();
      await cache.release("k", d);
      assert.equal(cache.size("k"), 0);
      assert.equal(d.usable, false);
    });
  });

  test("at most maxIdlePerKey idle sessions per key; the most recently used is taken first", async () => {
    await withFake({}, async (_f, open) => {
      const cache = new ConnectionCache({ idleMs: 60_000, maxIdlePerKey: 2, timer: new ManualClock() });
      const [a, b, c] = [await open(), await open(), await open()];
      await cache.release("k", a);
      await cache.release("k", b);
      await cache.release("k", c);
      assert.equal(cache.size("k"), 2);
      assert.equal(c.usable, false);
      assert.equal(await cache.take("k"), b);
      assert.equal(await cache.take("k"), a);
      a.close();
      b.close();
    });
  });

  for (const [what, act] of [
    ["sends 421 and closes", (s: net.Socket) => s.end("421 4.4.2 idle timeout\r\n")],
    ["sends 421 and keeps the connection open", (s: net.Socket) => s.write("421 4.4.2 idle timeout\r\n")],
    ["closes without a word", (s: net.Socket) => s.end()],
  ] as const) {
    test(`a session whose server ${what} while it is idle is dropped, never RSET; no reply is misread`, async () => {
      let socket: net.Socket | undefined;
      await withFake({ respond: (l, s) => { if (l.startsWith("EHLO")) socket = s; return undefined; } }, async (f, open) => {
        const cache = new ConnectionCache({ idleMs: 60_000, timer: new ManualClock() });
        const s = await open();
        await cache.release("k", s);
        act(socket!);
        await until(() => !s.usable, "the session to notice");
        if (what.includes("421")) assert.equal(s.failure?.reply?.code, 421);
        assert.equal(await cache.take("k"), undefined);
        assert.ok(!f.lines.includes("RSET"));
      });
    });
  }

  test("RSET before reuse answered with 421: the session is dropped, take() gives nothing", async () => {
    await withFake({ respond: (l) => (l === "RSET" ? "421 4.4.2 closing\r\n" : undefined) }, async (f, open) => {
      const cache = new ConnectionCache({ idleMs: 60_000, timer: new ManualClock() });
      const s = await open();
      await cache.release("k", s);
      assert.equal(await cache.take("k"), undefined);
      assert.equal(s.usable, false);
      assert.equal(f.lines.at(-1), "RSET");
    });
  });
});
