import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { JournalSpool } from "../../src/spool/journal-spool.ts";
import { bodyFor, envelopeFor } from "./fixtures/derive.ts";
import { readAll, tempDir } from "./helpers.ts";

const NODE = fileURLToPath(new URL("../../node_modules/.bin/node", import.meta.url));
const CHILD = fileURLToPath(new URL("./fixtures/journal-commit-loop.ts", import.meta.url));

/** Run the child until it has printed `killAfter` lines, then SIGKILL it. */
function runAndKill(dir: string, killAfter: number): Promise<{ lines: string[]; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [CHILD, dir], { stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    let partial = "";
    let stderr = "";
    let killed = false;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (data: string) => {
      const got = (partial + data).split("\n");
      partial = got.pop() ?? "";
      lines.push(...got);
      if (!killed && lines.length >= killAfter) killed = child.kill("SIGKILL");
    });
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal !== "SIGKILL" && code !== 0) reject(new Error(`child failed (${code}): ${stderr}`));
      else resolve({ lines, killed: signal === "SIGKILL" });
    });
  });
}

test("journal: SIGKILL at any moment: every acknowledged message survives whole, nothing partial is listed", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const acknowledged = new Set<string>();
    const removed = new Set<string>();
    let kills = 0;
    let recoveries = 0;
    for (const killAfter of [1, 9, 35, 90, 160]) {
      const { lines, killed } = await runAndKill(dir, killAfter);
      if (killed) kills++;
      for (const line of lines) {
        if (line.startsWith("-")) removed.add(line.slice(1));
        else acknowledged.add(line);
      }
      const spool = new JournalSpool(dir, {
        onWarning: (m) => {
          if (/removed \d+ partial|cut \d+ byte/.test(m)) recoveries++;
          else assert.fail(`unexpected warning: ${m}`);
        },
      });
      await spool.open();
      try {
        const listed = new Set(await spool.list());
        for (const id of acknowledged) {
          if (!removed.has(id)) assert.ok(listed.has(id), `acknowledged ${id} was lost`);
        }
        // Everything listed (acknowledged, or removed with its tombstone lost) is a whole message.
        for (const id of listed) {
          assert.deepEqual(await spool.readEnvelope(id), envelopeFor(id));
          assert.ok((await readAll(spool.readBody(id))).equals(bodyFor(id)), `body of ${id}`);
        }
        // No orphan body files: each file in large/ belongs to a listed message.
        for (const name of await readdir(join(dir, "large"))) assert.ok(listed.has(name), `orphan large/${name}`);
        // Forget what was removed for good, so a later run does not expect it.
        for (const id of removed) if (!listed.has(id)) acknowledged.delete(id);
      } finally {
        await spool.close();
      }
    }
    assert.ok(kills >= 4, `only ${kills} of 5 runs were killed mid-way`);
    assert.ok(recoveries >= 1, "no kill interrupted a commit");
    assert.ok(acknowledged.size >= 50);
  } finally {
    await cleanup();
  }
});
