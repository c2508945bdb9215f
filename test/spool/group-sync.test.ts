import { test } from "node:test";
import assert from "node:assert/strict";
import { GroupSync } from "../../src/spool/group-sync.ts";

/** A sync function whose calls finish only when the test says so. */
function controlledSync() {
  const calls: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  let started: () => void = () => {};
  const fn = () =>
    new Promise<void>((resolve, reject) => {
      calls.push({ resolve, reject });
      started();
    });
  const nextStart = () => new Promise<void>((r) => (started = r));
  return { fn, calls, nextStart };
}

test("one request when idle starts a sync at once", async () => {
  const c = controlledSync();
  const g = new GroupSync(c.fn);
  const started = c.nextStart();
  const p = g.request();
  await started;
  assert.equal(c.calls.length, 1);
  c.calls[0].resolve();
  await p;
  assert.equal(g.syncs, 1);
});

test("requests made while a sync runs share the next sync, and are not served by the running one", async () => {
  const c = controlledSync();
  const g = new GroupSync(c.fn);
  let started = c.nextStart();
  const first = g.request();
  await started;
  const done: number[] = [];
  const later = Array.from({ length: 50 }, (_, i) => g.request().then(() => done.push(i)));
  started = c.nextStart();
  c.calls[0].resolve();
  await first;
  await started;
  // The first sync began before these requests: none of them may be resolved by it.
  assert.deepEqual(done, []);
  assert.equal(c.calls.length, 2);
  c.calls[1].resolve();
  await Promise.all(later);
  assert.equal(done.length, 50);
  assert.equal(g.syncs, 2);
  await g.idle();
});

test("a failed sync rejects only its own batch", async () => {
  const c = controlledSync();
  const g = new GroupSync(c.fn);
  let started = c.nextStart();
  const first = g.request();
  await started;
  const second = g.request();
  started = c.nextStart();
  c.calls[0].reject(Object.assign(new Error("EIO"), { code: "EIO" }));
  await assert.rejects(first, /EIO/);
  await started;
  c.calls[1].resolve();
  await second;
  assert.equal(g.syncs, 2);
});

test("requests in the same tick share one sync", async () => {
  let calls = 0;
  const g = new GroupSync(async () => {
    calls++;
  });
  await Promise.all(Array.from({ length: 20 }, () => g.request()));
  assert.equal(calls, 1);
});
