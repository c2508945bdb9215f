import { test } from "node:test";
import assert from "node:assert/strict";
import { isQueueId, newQueueId, queueIdTime } from "../../src/spool/queue-id.ts";

test("100k queue ids are unique, well-formed and filename-safe", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100_000; i++) {
    const id = newQueueId();
    assert.ok(isQueueId(id), id);
    seen.add(id);
  }
  assert.equal(seen.size, 100_000);
});

test("ids sort in time order, and in minting order within one millisecond", () => {
  const ids: string[] = [];
  const times = [1, 31, 32, 1023, 1024, 1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000, 2 ** 50 - 1];
  for (const t of times) {
    ids.push(newQueueId(t), newQueueId(t), newQueueId(t));
  }
  assert.deepEqual([...ids].sort(), ids);
  for (let i = 0; i < times.length; i++) assert.equal(queueIdTime(ids[3 * i]), times[i]);
});

test("randomness is injected: the same inputs give the same id after a clock change", () => {
  const zeros = (n: number) => Buffer.alloc(n);
  assert.equal(newQueueId(5_000, zeros), "00000004W800000000");
  assert.equal(newQueueId(5_000, zeros), "00000004W800000001");
  const ff = (n: number) => Buffer.alloc(n, 0xff);
  assert.equal(newQueueId(6_000, ff), "00000005VGZZZZZZZZ");
});

test("isQueueId rejects anything that could leave the spool directory", () => {
  for (const bad of ["", "../x", "a/b", "..", ".", "/etc/passwd", "00000004W80000000", "00000004W8000000000",
    "00000004W80000000/", "00000004y800000000", "00000004W80000000I", "00000004W8000000\u00d8", 42, null, undefined]) {
    assert.equal(isQueueId(bad), false, String(bad));
  }
  assert.equal(isQueueId("00000004W800000000"), true);
});

test("a time outside the encodable range is refused", () => {
  assert.throws(() => newQueueId(-1), RangeError);
  assert.throws(() => newQueueId(2 ** 50), RangeError);
});
