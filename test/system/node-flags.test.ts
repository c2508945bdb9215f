/**
 * Petrel's launchers start Node with the same V8 flags (src/system/node-flags.ts),
 * and those flags keep the young generation small after a burst of allocation.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { NODE_FLAGS } from "../../src/system/node-flags.ts";

const ROOT = join(import.meta.dirname, "..", "..");

test("the installed petrel (the #! line of cli/main.ts) and bin/petrel start Node with NODE_FLAGS", () => {
  const shebang = readFileSync(join(ROOT, "src", "cli", "main.ts"), "utf8").split("\n")[0];
  assert.equal(shebang, `#!/usr/bin/env -S node ${NODE_FLAGS.join(" ")}`);
  const wrapper = readFileSync(join(ROOT, "bin", "petrel"), "utf8");
  assert.match(wrapper, new RegExp(`node_modules/\\.bin/node" ${NODE_FLAGS.join(" ")} "`));
});

test("with NODE_FLAGS a burst of short-lived objects leaves a new space of at most 16 MiB (V8 would grow it to 128 MiB on a large machine)", () => {
  const burst = `
    let keep = [];
    for (let i = 0; i < 3e6; i++) { keep.push({ a: i, b: "x" + i }); if (keep.length > 200000) keep = []; }
    const s = require("node:v8").getHeapSpaceStatistics().find((x) => x.space_name === "new_space");
    console.log(s.space_size);`;
  const r = spawnSync(process.execPath, [...NODE_FLAGS, "-e", burst], { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(Number(r.stdout) <= 16 * 1024 * 1024, `new space ${Number(r.stdout) / 1048576} MiB`);
});
