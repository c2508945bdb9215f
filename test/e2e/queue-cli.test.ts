/**
 * `petrel queue …` against the queue store, the same answers online (through
 * the running server's control socket) and offline (the data directory's
 * lock, no server): list pages with totals, --json (one array, written page
 * by page), summary --json, show, hold, release, retry, delete.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { SmtpClient, freePort, queuedId, runPetrel, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess } from "./fixtures/robust-helpers.ts";
import { until } from "../support/until.ts";

const MESSAGES = 12;

async function cli(configPath: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runPetrel(["queue", ...args, "--config", configPath]);
  const exit = await p.exited;
  return { code: exit.code, stdout: p.stdout(), stderr: p.stderr() };
}

async function ok(configPath: string, args: string[]): Promise<string> {
  const r = await cli(configPath, args);
  assert.equal(r.code, 0, `petrel queue ${args.join(" ")}: ${r.stderr}`);
  assert.equal(r.stderr, "", "nothing on stderr (no runtime warnings either)");
  return r.stdout;
}

interface Item { id: string; held: boolean; recipients: { address: string; status: string; attempts: number }[] }

/** The same checks whoever answers: `n` messages deferred to example.test, `ids` in arrival order. */
async function checkQueue(configPath: string, ids: string[], mode: string): Promise<void> {
  const n = ids.length;
  const all = JSON.parse(await ok(configPath, ["list", "--json", "--all"])) as Item[];
  assert.deepEqual(all.map((m) => m.id), ids, `${mode}: every message, oldest first`);
  assert.ok(all.every((m) => m.recipients[0].status === "deferred" && m.recipients[0].attempts >= 1), mode);
  const some = JSON.parse(await ok(configPath, ["list", "--json", "--limit", "3"])) as Item[];
  assert.deepEqual(some.map((m) => m.id), ids.slice(0, 3));
  const text = await ok(configPath, ["list", "--limit", "3"]);
  assert.match(text, new RegExp(`-- ${n} messages, ${n} recipients waiting; the oldest 3 shown`), mode);
  const summary = JSON.parse(await ok(configPath, ["summary", "--json"])) as { ageBuckets: number[]; rows: { domain: string; total: number }[] };
  assert.deepEqual(summary.rows.map((r) => [r.domain, r.total]), [["TOTAL", n], ["example.test", n]], mode);
  assert.ok(summary.ageBuckets.length > 0);
  assert.match(await ok(configPath, ["summary"]), /example\.test/);

  assert.equal(await ok(configPath, ["hold", ids[0]]), `Held ${ids[0]}\n`);
  const shown = await ok(configPath, ["show", ids[0]]);
  assert.match(shown, new RegExp(ids[0]));
  assert.match(shown, /history of <postmaster@example\.test>:\n {2}\d{4}-\S+ {2}deferred 4\.\d\.\d/);
  const retried = await ok(configPath, ["retry", "--all"]);
  assert.equal(retried, `${n - 1} message(s) scheduled for delivery now\n1 message(s) on hold left alone (release with petrel queue release ID): ${ids[0]}\n`, mode);
  assert.equal(await ok(configPath, ["release", ids[0]]), `Released ${ids[0]}\n`);
  const missing = await cli(configPath, ["show", "0000000000000000000"]);
  assert.equal(missing.code, 1);
}

test("petrel queue list/summary/show/hold/release/retry/delete, online and offline, over the queue store", { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const closedPort = await freePort();
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test",
    workers: 1,
    dataDir: join(dir, "data"),
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    // Nothing listens there: mail for example.test waits in the queue, most of it in the store.
    transport: [{ domains: ["example.test"], type: "lmtp", host: "127.0.0.1", port: closedPort }],
    queue: { activeLimit: 4 },
  });
  let p: PetrelProcess | null = await servePetrel(configPath, 1);
  try {
    const c = await SmtpClient.connect(p.port("mx"));
    await c.ehlo();
    const ids: string[] = [];
    for (let i = 0; i < MESSAGES; i++) ids.push(queuedId(await c.send("someone@elsewhere.test", ["postmaster@example.test"], `Subject: ${i}\r\n\r\nhello\r\n`)));
    await c.quit();
    await until(async () => {
      const r = await cli(configPath, ["list", "--json", "--all"]);
      return r.code === 0 && (JSON.parse(r.stdout) as Item[]).filter((m) => m.recipients[0].status === "deferred").length === MESSAGES;
    }, "every message deferred", { ms: 60_000 });
    ids.sort();
    await checkQueue(configPath, ids, "online");
    assert.equal(await ok(configPath, ["delete", ids[1], "--yes"]), `Deleted ${ids[1]}\n`);
    ids.splice(1, 1);

    await stopPetrel(p);
    p = null;
    // Offline: the CLI opens the store under the data directory's lock.
    await until(async () => {
      const r = await cli(configPath, ["list", "--json", "--all"]);
      return r.code === 0 && (JSON.parse(r.stdout) as Item[]).every((m) => m.recipients[0].status === "deferred");
    }, "every message deferred again after the retry", { ms: 60_000 });
    await checkQueue(configPath, ids, "offline");
    assert.equal(await ok(configPath, ["delete", ids[2], "--yes"]), `Deleted ${ids[2]}\n`);
    ids.splice(2, 1);
    const left = JSON.parse(await ok(configPath, ["list", "--json", "--all"])) as Item[];
    assert.deepEqual(left.map((m) => m.id), ids);
  } finally {
    SmtpClient.closeAll();
    if (p) await stopPetrel(p);
    await cleanup();
  }
});
