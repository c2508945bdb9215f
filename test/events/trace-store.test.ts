/**
 * The trace store on disk: a trace survives a restart (read back from the
 * hourly segments), a message older than what memory holds is found on
 * disk from its queue id's hour on, segments past the retention or over
 * the size bound are deleted, and a line cut short by a crash is skipped.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../src/mail/clock.ts";
import { EventBus } from "../../src/events/event-bus.ts";
import { TraceStore } from "../../src/events/trace-store.ts";
import { segmentName } from "../../src/events/trace-segments.ts";
import { newQueueId, queueIdTime } from "../../src/spool/queue-id.ts";

const HOUR = 3_600_000;

async function store(dir: string, clock: ManualClock, extra: Partial<ConstructorParameters<typeof TraceStore>[0]> = {}) {
  const trace = new TraceStore({ dir, retention: 24 * HOUR, maxBytes: 1024 * 1024, clock, ...extra });
  const bus = new EventBus({ clock });
  bus.continueFrom((await trace.open()) + 1);
  bus.subscribe((e) => trace.take(e));
  return { trace, bus };
}

test("a trace survives a restart, and a message memory no longer holds is found on disk", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-trace-"));
  try {
    const clock = new ManualClock(Date.UTC(2026, 4, 1, 10, 30));
    const a = await store(dir, clock, { memoryMessages: 2 });
    const first = newQueueId(clock.now());
    a.bus.emit({ type: "accepted", queueId: first, origin: "smtp", from: "s@far.test", to: ["a@example.test"], size: 10, client: { address: "192.0.2.1", helo: "c", role: "mx" } });
    clock.advance(HOUR); // the next hour: a second segment
    a.bus.emit({ type: "delivery", queueId: first, recipient: "a@example.test", transport: "remote", destination: "example.test", status: "deferred", enhanced: "4.4.1", reply: "connect refused", durationMs: 5, attempt: 1 });
    for (let i = 0; i < 3; i++) {
      const other = newQueueId(clock.now());
      a.bus.emit({ type: "accepted", queueId: other, origin: "smtp", from: "x@far.test", to: ["b@example.test"], size: 1, client: { address: "192.0.2.2", role: "mx" } });
    }
    // Not yet flushed: still answered (from memory or after a flush).
    const before = await a.trace.trace(first, queueIdTime(first));
    assert.deepEqual(before.map((e) => e.type), ["accepted", "delivery"]);
    await a.trace.close();
    assert.deepEqual((await readdir(dir)).sort(), [segmentName(Date.UTC(2026, 4, 1, 10)), segmentName(Date.UTC(2026, 4, 1, 11))]);

    const b = await store(dir, clock, { memoryMessages: 2 });
    const after = await b.trace.trace(first, queueIdTime(first));
    assert.deepEqual(after.map((e) => [e.type, e.seq]), [["accepted", 1], ["delivery", 2]]);
    // Numbering goes on after the last event on disk.
    b.bus.emit({ type: "removed", queueId: first });
    assert.equal((await b.trace.trace(first, queueIdTime(first))).at(-1)!.seq, 6);
    assert.equal(b.trace.activity({ types: ["accepted"] }).length, 4);
    await b.trace.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("segments past the retention and over the size bound are deleted; a torn last line is skipped", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-trace-"));
  try {
    const clock = new ManualClock(Date.UTC(2026, 4, 1, 0, 0));
    const s = await store(dir, clock, { retention: 3 * HOUR, maxBytes: 1024 * 1024 });
    const ids: string[] = [];
    for (let h = 0; h < 6; h++) {
      const id = newQueueId(clock.now());
      ids.push(id);
      s.bus.emit({ type: "accepted", queueId: id, origin: "smtp", from: "s@far.test", to: ["a@example.test"], size: 1, client: { address: "192.0.2.1", role: "mx" } });
      await s.trace.flush();
      clock.advance(HOUR);
    }
    await s.trace.close();
    // At 06:00 with 3 hours kept: the segments of 03:00, 04:00 and 05:00 remain.
    const t = await store(dir, clock, { retention: 3 * HOUR, memoryMessages: 1 });
    assert.deepEqual((await readdir(dir)).sort(), [3, 4, 5].map((h) => segmentName(Date.UTC(2026, 4, 1, h))));
    assert.deepEqual(await t.trace.trace(ids[0], queueIdTime(ids[0])), []);
    assert.equal((await t.trace.trace(ids[4], queueIdTime(ids[4]))).length, 1);
    await t.trace.close();
    // A crash mid-line: the torn line is skipped, the rest read.
    await appendFile(join(dir, segmentName(Date.UTC(2026, 4, 1, 5))), '{"type":"accepted","queueId":"X');
    const u = await store(dir, clock, { retention: 3 * HOUR });
    assert.equal(u.trace.activity({ types: ["accepted"] }).length, 3);
    await u.trace.close();

    // Over the size bound, the oldest segments go first.
    const v = await store(dir, clock, { retention: 100 * HOUR, maxBytes: 600 });
    for (let h = 0; h < 3; h++) {
      v.bus.emit({ type: "rejected", check: "relay", stage: "rcpt", reason: "x".repeat(200), reply: "550", client: "192.0.2.9", role: "mx" });
      await v.trace.flush();
      clock.advance(HOUR);
    }
    v.bus.emit({ type: "removed", queueId: ids[5] });
    await v.trace.flush();
    const left = (await readdir(dir)).sort();
    assert.ok(left.length <= 3, left.join(", "));
    assert.equal(left.at(-1), segmentName(clock.now()));
    assert.ok(!left.includes(segmentName(Date.UTC(2026, 4, 1, 3))));
    await v.trace.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
