import { test } from "node:test";
import assert from "node:assert/strict";
import { formatSummary, summaryReport } from "../../src/queue/queue-report.ts";
import type { QueueListItem } from "../../src/queue/queue-manager.ts";

const MIN = 60_000;
const now = Date.UTC(2026, 0, 1);

function item(ageMinutes: number, ...addresses: string[]): QueueListItem {
  return {
    id: `ID${ageMinutes}`, arrival: now - ageMinutes * MIN, size: 100, sender: "s@a.test", held: false,
    recipients: addresses.map((address) => ({ address, original: address, status: "deferred", attempts: 1, nextAttempt: now })),
  };
}

test("summary --json: each age column comes with its bounds in minutes, and a recipient is counted in the column whose bounds hold its age", () => {
  const report = summaryReport([item(0, "a@far.test"), item(5, "b@far.test"), item(6, "c@other.test"), item(1280, "d@far.test"), item(5000, "e@far.test")], now);
  assert.deepEqual(report.ageBuckets, [
    { minMinutes: 0, maxMinutes: 5 }, { minMinutes: 5, maxMinutes: 10 }, { minMinutes: 10, maxMinutes: 20 },
    { minMinutes: 20, maxMinutes: 40 }, { minMinutes: 40, maxMinutes: 80 }, { minMinutes: 80, maxMinutes: 160 },
    { minMinutes: 160, maxMinutes: 320 }, { minMinutes: 320, maxMinutes: 640 }, { minMinutes: 640, maxMinutes: 1280 },
    { minMinutes: 1280, maxMinutes: null },
  ]);
  const total = report.rows[0];
  assert.equal(total.domain, "TOTAL");
  assert.equal(total.buckets.length, report.ageBuckets.length);
  const at = (row: { buckets: number[] }, min: number, max: number | null) =>
    row.buckets[report.ageBuckets.findIndex((b) => b.minMinutes === min && b.maxMinutes === max)];
  assert.equal(at(total, 0, 5), 2, "0 and 5 minutes old: at most 5");
  assert.equal(at(total, 5, 10), 1);
  assert.equal(at(total, 640, 1280), 1, "exactly 1280 minutes is in the 1280 column");
  assert.equal(at(total, 1280, null), 1);
  assert.deepEqual(report.rows.map((r) => [r.domain, r.total]), [["TOTAL", 5], ["far.test", 4], ["other.test", 1]]);
  // The JSON a script reads is exactly this object.
  assert.deepEqual(JSON.parse(JSON.stringify(report)), report);
  // The text table keeps qshape's headings.
  assert.match(formatSummary(report.rows), /^\s+T\s+5\s+10\s+20\s+40\s+80\s+160\s+320\s+640\s+1280\s+1280\+\n/);
});
