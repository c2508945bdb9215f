import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileSpool } from "../../src/spool/file-spool.ts";
import { bodyFor, envelopeFor } from "./fixtures/derive.ts";
import { readAll, tempDir } from "./helpers.ts";

const NODE = fileURLToPath(new URL("../../node_modules/.bin/node", import.meta.url));
const CHILD = fileURLToPath(new URL("./fixtures/commit-loop.ts", import.meta.url));

/** Run the child until it has printed `killAfter` ids, then SIGKILL it. Returns the ids it printed. */
function runAndKill(dir: string, killAfter: number): Promise<{ ids: string[]; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [CHILD, dir], { stdio: ["ignore", "pipe", "pipe"] });
    const ids: string[] = [];
    let partial = "";
    let stderr = "";
    let killed = false;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (data: string) => {
      const lines = (partial + data).split("\n");
      partial = lines.pop() ?? "";
      ids.push(...lines);
      if (!killed && ids.length >= killAfter) {
        killed = child.kill("SIGKILL");
      }
    });
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal !== "SIGKILL" && code !== 0) reject(new Error(`child failed (${code}): ${stderr}`));
      else resolve({ ids, killed: signal === "SIGKILL" });
    });
  });
}

test("SIGKILL at any moment: every acknowledged message survives whole, nothing partial is listed", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const acknowledged = new Set<string>();
    let kills = 0;
    let partialsRemoved = 0;
    for (const killAfter of [1, 7, 30, 75, 140]) {
      const { ids, killed } = await runAndKill(dir, killAfter);
      if (killed) kills++;
      for (const id of ids) acknowledged.add(id);

      const spool = new FileSpool(dir, {
        onWarning: (m) => {
          const removed = /removed (\d+) partial/.exec(m);
          if (removed) partialsRemoved += Number(removed[1]);
          else assert.fail(`unexpected warning: ${m}`);
        },
      });
      await spool.open();
      try {
        const listed = await spool.list();
        const listedSet = new Set(listed);
        for (const id of acknowledged) assert.ok(listedSet.has(id), `acknowledged ${id} was lost`);
        // Everything listed (acknowledged or not) must be a whole message.
        for (const id of listed) {
          assert.deepEqual(await spool.readEnvelope(id), envelopeFor(id));
          assert.ok((await readAll(spool.readBody(id))).equals(bodyFor(id)), `body of ${id}`);
        }
        assert.deepEqual(await readdir(join(dir, "tmp")), []);
        assert.deepEqual(await readdir(join(dir, "corrupt")), []);
      } finally {
        await spool.close();
      }
    }
    assert.ok(kills >= 4, `only ${kills} of 5 runs were killed mid-way`);
    // The kills really landed mid-message: open() found and removed partial files.
    assert.ok(partialsRemoved >= 1, "no kill interrupted a message");
    assert.ok(acknowledged.size >= 1 + 7 + 30 + 75);
  } finally {
    await cleanup();
  }
});
