import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/mail/clock.ts";
import { RateCounters } from "../../src/policy/rate-counters.ts";

const MINUTE = 60_000;

function counters(maxKeys = 1000) {
  // Start on a window boundary so the fractions below are exact.
  const clock = new ManualClock(100 * MINUTE);
  return { clock, rates: new RateCounters({ maxKeys, clock }) };
}

test("hit counts events in the current window, the event itself included", () => {
  const { rates } = counters();
  assert.equal(rates.hit("a", MINUTE), 1);
  assert.equal(rates.hit("a", MINUTE), 2);
  assert.equal(rates.hit("a", MINUTE), 3);
  assert.equal(rates.hit("b", MINUTE), 1, "keys are counted apart");
  assert.equal(rates.peek("a"), 3, "peek does not count");
  assert.equal(rates.peek("never"), 0);
});

test("the previous window is weighted by how much of it is still inside the last window (no burst across a boundary)", () => {
  const { clock, rates } = counters();
  for (let i = 0; i < 10; i++) rates.hit("a", MINUTE);
  clock.advance(MINUTE); // the start of the next window: all 10 still count
  assert.equal(rates.peek("a"), 10);
  clock.advance(MINUTE / 4); // a quarter in: 3/4 of the 10
  assert.equal(rates.peek("a"), 7.5);
  assert.equal(rates.hit("a", MINUTE), 8.5);
  clock.advance(MINUTE / 2); // three quarters in
  assert.equal(rates.peek("a"), 2.5 + 1);
});

test("two windows without events: nothing is left", () => {
  const { clock, rates } = counters();
  for (let i = 0; i < 10; i++) rates.hit("a", MINUTE);
  clock.advance(2 * MINUTE);
  assert.equal(rates.peek("a"), 0);
  assert.equal(rates.hit("a", MINUTE), 1);
});

test("a fixed window would let 2× the limit through around a boundary; the sliding window does not", () => {
  const { clock, rates } = counters();
  clock.advance(MINUTE - 1000); // one second before a boundary
  for (let i = 0; i < 10; i++) rates.hit("a", MINUTE);
  clock.advance(2000); // one second after it
  const rate = rates.hit("a", MINUTE);
  assert.ok(rate > 10, `rate ${rate} counts the burst of the window before`);
});

test("memory is bounded: 100,000 distinct clients keep at most maxKeys counters, least recently used dropped first", () => {
  const { clock, rates } = counters(10_000);
  rates.hit("keep", MINUTE);
  for (let i = 0; i < 100_000; i++) {
    rates.hit(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, MINUTE);
    if (i % 1000 === 0) rates.hit("keep", MINUTE); // used all along: never the least recently used
    if (i % 10_000 === 0) clock.advance(100);
  }
  const stats = rates.stats();
  // Evicted a sixteenth at a time: between 15/16 of maxKeys and maxKeys stay.
  assert.ok(stats.keys <= 10_000 && stats.keys >= 10_000 - 625, `${stats.keys} keys`);
  assert.equal(stats.evicted, 100_000 + 1 - stats.keys);
  assert.equal(rates.peek("keep"), 101);
  assert.equal(rates.peek("10.0.0.0"), 0, "the oldest clients were dropped");
  assert.equal(rates.peek("10.1.134.159"), 1, "the newest are kept");
});

test("idle keys are swept as the table is used: after two idle windows one hit clears them", () => {
  const { clock, rates } = counters(100_000);
  for (let i = 0; i < 50_000; i++) rates.hit(`k${i}`, MINUTE);
  assert.equal(rates.stats().keys, 50_000);
  clock.advance(MINUTE);
  rates.hit("fresh", MINUTE);
  assert.equal(rates.stats().keys, 50_001, "one window idle: still counted");
  clock.advance(MINUTE);
  rates.hit("fresh", MINUTE);
  assert.equal(rates.stats().keys, 1, "two windows idle: dropped");
  assert.equal(rates.stats().evicted, 0, "idle keys are not counted as evictions");
});

test("each key has its own window length", () => {
  const { clock, rates } = counters();
  for (let i = 0; i < 4; i++) rates.hit("per-minute", MINUTE);
  for (let i = 0; i < 4; i++) rates.hit("per-hour", 60 * MINUTE);
  clock.advance(2 * MINUTE);
  assert.equal(rates.peek("per-minute"), 0);
  assert.equal(rates.peek("per-hour"), 4);
  clock.advance(3 * MINUTE);
  rates.hit("other", MINUTE); // a sweep: the hour key is not idle
  assert.equal(rates.peek("per-hour"), 4);
});
