import { test } from "node:test";
import assert from "node:assert/strict";
import { withoutSqliteWarning } from "../../src/queue/sqlite-module.ts";

test("loading node:sqlite: its ExperimentalWarning is dropped, every other warning still reaches the listeners", async () => {
  const seen: string[] = [];
  const listen = (w: Error) => seen.push(`${w.name}: ${w.message}`);
  process.on("warning", listen);
  try {
    withoutSqliteWarning(() => {
      process.emitWarning("SQLite is an experimental feature and might change at any time", "ExperimentalWarning");
      process.emitWarning("Something else is experimental", "ExperimentalWarning");
      process.emitWarning("SQLite said something", "DeprecationWarning");
    });
    process.emitWarning("SQLite is an experimental feature and might change at any time", "ExperimentalWarning");
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, [
      "ExperimentalWarning: Something else is experimental",
      "DeprecationWarning: SQLite said something",
      "ExperimentalWarning: SQLite is an experimental feature and might change at any time",
    ]);
  } finally {
    process.off("warning", listen);
  }
});
