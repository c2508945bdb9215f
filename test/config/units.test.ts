import assert from "node:assert/strict";
import { test } from "node:test";
import { formatDuration, formatSize, parseDuration, parseSize } from "../../src/config/units.ts";

test("sizes: bytes, 1000-based and 1024-based units", () => {
  assert.equal(parseSize(26214400), 26214400);
  assert.equal(parseSize("26214400"), 26214400);
  assert.equal(parseSize("25MiB"), 25 * 1024 * 1024);
  assert.equal(parseSize("10MB"), 10_000_000);
  assert.equal(parseSize("512 KiB"), 512 * 1024);
  assert.equal(parseSize("1kb"), 1000);
  assert.equal(parseSize("2GiB"), 2 * 1024 ** 3);
  assert.equal(parseSize("1GB"), 1e9);
  assert.equal(parseSize("100B"), 100);
  assert.equal(parseSize("1.5KiB"), 1536);
  assert.equal(parseSize(0), 0);
});

test("sizes: what is not a size", () => {
  for (const bad of ["abc", "", "-1", "10 parsecs", "MiB", -1, 1.5, Number.NaN, null, true, [], {}]) {
    assert.equal(parseSize(bad), undefined, `parseSize(${JSON.stringify(bad)})`);
  }
});

test("durations: bare numbers are seconds, output is milliseconds", () => {
  assert.equal(parseDuration(300), 300_000);
  assert.equal(parseDuration(0.5), 500);
  assert.equal(parseDuration("300"), 300_000);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("5d"), 5 * 86_400_000);
  assert.equal(parseDuration("1.5 h"), 5_400_000);
});

test("durations: the unit may follow a space and be written as a word, like sizes (\"10 MB\")", () => {
  assert.equal(parseDuration("5 min"), 300_000);
  assert.equal(parseDuration("5min"), 300_000);
  assert.equal(parseDuration("30 s"), 30_000);
  assert.equal(parseDuration("30 sec"), 30_000);
  assert.equal(parseDuration("1 h"), 3_600_000);
  assert.equal(parseDuration("2 hours"), 7_200_000);
  assert.equal(parseDuration("1 hr"), 3_600_000);
  assert.equal(parseDuration("500 ms"), 500);
  assert.equal(parseDuration("1 day"), 86_400_000);
  assert.equal(parseDuration("5 Days"), 5 * 86_400_000);
  assert.equal(parseDuration("10 minutes"), 600_000);
  assert.equal(parseDuration(" 1 second "), 1000);
});

test("durations: what is not a duration", () => {
  for (const bad of ["5x", "", "-5s", "s", "5 mo", "5 months", "5 m in", "5 constructor", "5 __proto__", -1, Infinity, null, false]) {
    assert.equal(parseDuration(bad), undefined, `parseDuration(${JSON.stringify(bad)})`);
  }
});

test("formatting for messages and docs", () => {
  assert.equal(formatSize(26214400), "25MiB");
  assert.equal(formatSize(2048), "2KiB");
  assert.equal(formatSize(1000), "1000B");
  assert.equal(formatDuration(300_000), "5m");
  assert.equal(formatDuration(3_600_000), "1h");
  assert.equal(formatDuration(1500), "1500ms");
});
