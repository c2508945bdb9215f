/**
 * Inflow control (Postfix's in_flow_delay) on its own: tokens taken per
 * message, given back as the queue starts deliveries, topped up while it
 * keeps up; a message without a token waits at most the delay, then goes
 * ahead — paced, never refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/mail/clock.ts";
import { InflowControl } from "../../src/queue/inflow.ts";

/** Whether `p` has settled once pending callbacks ran (no timers involved). */
async function settled(p: Promise<void>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
}

test("while tokens last a message goes ahead at once; then it waits until a delivery starts", async () => {
  const clock = new ManualClock();
  const flow = new InflowControl({ clock, delay: 1000, limit: 2 });
  assert.equal(flow.take(), undefined);
  assert.equal(flow.take(), undefined);
  const third = flow.take();
  assert.ok(third, "the third message waits");
  assert.equal(flow.waiting, 1);
  assert.equal(await settled(third), false);
  flow.put(1);
  assert.equal(await settled(third), true);
  assert.equal(flow.waiting, 0);
  // The token went to the waiting session: none is left over.
  assert.ok(flow.take());
});

test("without a token a message waits the delay, then goes ahead (paced, not refused)", async () => {
  const clock = new ManualClock();
  const flow = new InflowControl({ clock, delay: 1000, limit: 1 });
  assert.equal(flow.take(), undefined);
  const waiting = flow.take()!;
  clock.advance(999);
  assert.equal(await settled(waiting), false);
  clock.advance(1);
  assert.equal(await settled(waiting), true);
  assert.equal(flow.waiting, 0);
});

test("waiting sessions get tokens in arrival order, and a new one does not jump the line", async () => {
  const clock = new ManualClock();
  const flow = new InflowControl({ clock, delay: 1000, limit: 3 });
  for (let i = 0; i < 3; i++) assert.equal(flow.take(), undefined);
  const order: number[] = [];
  const a = flow.take()!.then(() => order.push(1));
  const b = flow.take()!.then(() => order.push(2));
  flow.put(1);
  // A token arrives while b still waits: a newcomer queues behind it.
  const c = flow.take();
  assert.ok(c, "a newcomer waits behind those already waiting");
  const cDone = c.then(() => order.push(3));
  flow.put(2);
  await Promise.all([a, b, cDone]);
  assert.deepEqual(order, [1, 2, 3]);
});

test("fill tops the supply up to its limit, never past it; put never banks more than the limit", () => {
  const clock = new ManualClock();
  const flow = new InflowControl({ clock, delay: 1000, limit: 2 });
  flow.put(50);
  assert.equal(flow.take(), undefined);
  assert.equal(flow.take(), undefined);
  assert.ok(flow.take(), "two tokens at most");
  flow.fill();
  assert.equal(flow.waiting, 0, "fill released the waiting session");
  assert.equal(flow.take(), undefined);
  assert.ok(flow.take());
});

test("delay 0 turns it off; setDelay(0) and releaseAll let every waiting session go", async () => {
  const clock = new ManualClock();
  const off = new InflowControl({ clock, delay: 0, limit: 1 });
  for (let i = 0; i < 10; i++) assert.equal(off.take(), undefined);
  const flow = new InflowControl({ clock, delay: 1000, limit: 1 });
  flow.take();
  const a = flow.take()!;
  const b = flow.take()!;
  flow.setDelay(0);
  assert.equal(await settled(a), true);
  assert.equal(await settled(b), true);
  assert.equal(flow.take(), undefined);
  flow.setDelay(1000);
  flow.take();
  const c = flow.take()!;
  flow.releaseAll();
  assert.equal(await settled(c), true);
  assert.equal(flow.waiting, 0);
});

test("sessions that timed out are not kept: the list stays bounded while no token comes", () => {
  const clock = new ManualClock();
  const flow = new InflowControl({ clock, delay: 10, limit: 1 });
  flow.take();
  // A session arrives every 5 ms and each waits 10 ms: some always wait, the older ones time out.
  for (let round = 0; round < 500; round++) {
    void flow.take();
    clock.advance(5);
  }
  assert.ok(flow.waiting > 0 && flow.waiting <= 2, `waiting ${flow.waiting}`);
  const kept = (flow as unknown as { waiters: unknown[] }).waiters.length;
  assert.ok(kept <= 2 * flow.waiting + 65, `${kept} waiters kept for ${flow.waiting} waiting`);
});

test("tokens spent on messages never stored come back when the queue is idle: no wait after an outage", async () => {
  const clock = new ManualClock();
  const flow = new InflowControl({ clock, delay: 1000, limit: 2 });
  let keepingUp = false;
  flow.watch(() => keepingUp);
  // Two messages took their tokens and were refused (the spool away): no delivery will give them back.
  assert.equal(flow.take(), undefined);
  assert.equal(flow.take(), undefined);
  // While the queue is behind, the next message waits.
  const behind = flow.take();
  assert.ok(behind, "paced while the queue is behind");
  clock.advance(1000);
  assert.equal(await settled(behind), true);
  // The queue is idle with nothing waiting for a slot: the next message goes ahead at once.
  keepingUp = true;
  assert.equal(flow.take(), undefined);
  assert.equal(flow.take(), undefined, "the supply was topped up to its limit");
});

test("the state the SMTP workers follow: open while tokens are to spare, paced while a message would wait, off without a delay — told once per change", async () => {
  const clock = new ManualClock();
  const flow = new InflowControl({ clock, delay: 1000, limit: 2 });
  const told: string[] = [];
  flow.onState((s) => told.push(s));
  assert.equal(flow.state, "open");
  flow.spend();
  assert.deepEqual(told, [], "a token left: still open");
  flow.spend();
  assert.equal(flow.state, "paced");
  flow.spend();
  assert.equal(flow.take() !== undefined, true, "no token: a message waits");
  flow.put(1);
  assert.equal(flow.state, "paced", "the token went to the waiting message");
  flow.put(1);
  assert.equal(flow.state, "open");
  const waiting = (flow.take(), flow.take());
  assert.ok(waiting);
  clock.advance(1000);
  assert.equal(await settled(waiting), true, "the delay passed");
  assert.equal(flow.state, "paced", "tokens spent, no one waiting: still paced");
  flow.setDelay(0);
  assert.equal(flow.state, "off");
  assert.deepEqual(told, ["paced", "open", "paced", "off"]);
});
