/**
 * Delivery keeps up with acceptance (Postfix's in_flow_delay): a whole
 * Petrel whose outbound deliveries are held back paces its SMTP sessions at
 * MAIL instead of letting a backlog grow — a paced MAIL is answered when the
 * queue starts the next delivery, or after queue.inflowDelay at the latest —
 * and refuses nothing: every message accepted is delivered, once — with the
 * sessions in the server's process and in SMTP workers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import * as net from "node:net";
import { ManualClock } from "../../src/mail/clock.ts";
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest } from "../../src/queue/ports.ts";
import { start, until } from "./fixtures/mta-helpers.ts";

/** An outbound destination that holds each delivery until the test lets it go. */
class HeldDestination implements DeliveryAgent {
  readonly started: string[] = [];
  readonly delivered = new Map<string, number>();
  private readonly gates: Array<() => void> = [];
  private open = false;
  async deliver(req: DeliveryRequest): Promise<DeliveryOutcomes> {
    this.started.push(req.queueId);
    if (!this.open) await new Promise<void>((resolve) => this.gates.push(resolve));
    const out = new Map<string, DeliveryOutcome>();
    for (const r of req.recipients) {
      this.delivered.set(req.queueId, (this.delivered.get(req.queueId) ?? 0) + 1);
      out.set(r, { status: "delivered", dsn: "passed" });
    }
    return out;
  }
  /** Let the oldest held delivery finish. */
  releaseOne(): void {
    this.gates.shift()?.();
  }
  get held(): number {
    return this.gates.length;
  }
  /** Hold nothing from now on (so the server can stop). */
  openUp(): void {
    this.open = true;
    while (this.gates.length > 0) this.releaseOne();
  }
}

/** One SMTP session, a command at a time; `reply` resolves with the next complete reply. */
class Session {
  private buffer = "";
  private waiting: ((r: string) => void) | null = null;
  readonly replies: string[] = [];
  private readonly socket: net.Socket;
  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      this.buffer += d;
      const m = /(^|\n)(\d{3}) [^\n]*\r\n$/.exec(this.buffer);
      if (!m) return;
      const r = this.buffer;
      this.buffer = "";
      this.replies.push(r);
      const w = this.waiting;
      this.waiting = null;
      w?.(r);
    });
  }
  static async open(port: number): Promise<Session> {
    const s = new Session(net.connect(port, "127.0.0.1"));
    await s.next();
    return s;
  }
  next(): Promise<string> {
    return new Promise((resolve) => (this.waiting = resolve));
  }
  send(line: string): Promise<string> {
    const r = this.next();
    this.socket.write(line + "\r\n");
    return r;
  }
  close(): void {
    this.socket.destroy();
  }
}

async function message(s: Session, n: number): Promise<string> {
  assert.match(await s.send(`RCPT TO:<fwd@example.test>`), /^250 /);
  assert.match(await s.send("DATA"), /^354 /);
  const r = await s.send(`Subject: paced ${n}\r\n\r\nbody ${n}\r\n.`);
  assert.match(r, /^250 2\.0\.0 Ok: queued as /);
  return /queued as (\S+)/.exec(r)![1];
}

// With SMTP workers the sessions run in other processes and the tokens stay the primary's (workers/remote-inflow.ts).
for (const workers of [1, 2]) {
  test(`sessions are paced at MAIL while deliveries fall behind, then go ahead when one starts or after queue.inflowDelay; nothing is refused or lost (workers: ${workers})`, async () => {
    const clock = new ManualClock(Date.now());
    const dest = new HeldDestination();
    // One delivery at a time, so one token may be taken ahead of it.
    const r = await start({ workers, queue: { concurrency: 1, perDestination: 1, inflowDelay: "1s" } }, undefined, undefined, { clock, remote: dest });
    let s: Session | null = null;
    try {
      await r.mta.accounts.addAlias("fwd@example.test", ["someone@far.test"]);
      s = await Session.open(r.mx);
      await s.send("EHLO client.test");
      const ids: string[] = [];
      // The first message takes the one token; its delivery starts (and is held) and gives a token back for the second.
      for (let n = 1; n <= 2; n++) {
        assert.match(await s.send("MAIL FROM:<sender@far.test>"), /^250 /);
        ids.push(await message(s, n));
        await until(async () => dest.started.length === 1, "the first delivery started");
      }
      // The third waits: no token, and no delivery can start while the first is held.
      const third = s.send("MAIL FROM:<sender@far.test>");
      await until(async () => r.mta.queue.pacedSessions === 1, "the third MAIL paced");
      assert.equal(s.replies.length, 2 + 2 * 4, "the third MAIL is not answered yet");
      // The first delivery ends; the second starts and hands its token to the waiting session — no time has passed.
      dest.releaseOne();
      assert.match(await third, /^250 /);
      assert.equal(dest.started.length, 2);
      ids.push(await message(s, 3));
      // The fourth waits too; nothing starts a delivery, so it goes ahead once the delay has passed — paced, not refused.
      const fourth = s.send("MAIL FROM:<sender@far.test>");
      await until(async () => r.mta.queue.pacedSessions === 1, "the fourth MAIL paced");
      clock.advance(999);
      assert.equal(r.mta.queue.pacedSessions, 1, "still waiting before the delay has passed");
      clock.advance(1);
      assert.match(await fourth, /^250 /);
      ids.push(await message(s, 4));
      assert.match(await s.send("QUIT"), /^221 /);
      // Every message accepted is delivered, once.
      for (let i = 0; i < 20 && dest.delivered.size < ids.length; i++) {
        await until(async () => dest.held > 0 || dest.delivered.size === ids.length, "a delivery to release");
        dest.releaseOne();
      }
      await until(async () => dest.delivered.size === ids.length && (await r.mta.smtp.spool.list()).length === 0, "every message delivered and the spool emptied");
      assert.deepEqual([...dest.delivered.keys()].sort(), [...ids].sort());
      assert.ok([...dest.delivered.values()].every((n) => n === 1), "each delivered once");
      assert.ok(s.replies.every((line) => !/^[45]\d\d /m.test(line)), `no refusal:\n${s.replies.join("")}`);
    } finally {
      s?.close();
      dest.openUp();
      await r.stop();
      await rm(r.dir, { recursive: true, force: true });
    }
  });

  test(`queue.inflowDelay 0: no pacing however far delivery falls behind (workers: ${workers})`, async () => {
    const clock = new ManualClock(Date.now());
    const dest = new HeldDestination();
    const r = await start({ workers, queue: { concurrency: 1, perDestination: 1, inflowDelay: 0 } }, undefined, undefined, { clock, remote: dest });
    let s: Session | null = null;
    try {
      await r.mta.accounts.addAlias("fwd@example.test", ["someone@far.test"]);
      s = await Session.open(r.mx);
      await s.send("EHLO client.test");
      for (let n = 1; n <= 5; n++) {
        assert.match(await s.send("MAIL FROM:<sender@far.test>"), /^250 /);
        await message(s, n);
      }
      assert.equal(r.mta.queue.pacedSessions, 0);
      assert.equal(dest.started.length, 1, "deliveries are held: only the first started");
    } finally {
      s?.close();
      dest.openUp();
      await r.stop();
      await rm(r.dir, { recursive: true, force: true });
    }
  });
}
