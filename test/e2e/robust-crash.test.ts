/**
 * "Nothing acknowledged is ever lost": the real `petrel serve` takes a burst
 * of mail from several concurrent sessions and is SIGKILLed at a random
 * instant; after a restart on the same data directory every message that got
 * "250 ... queued as ID" is still there, whole and byte-identical, and
 * nothing partial is. `petrel serve` runs the queue too, so a message is
 * either still in the spool or already delivered to the postmaster Maildir
 * (or both, if the kill fell between delivery and removal: a duplicate,
 * never a loss).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  SmtpClient, whereabouts, derivedKey, derivedMessage, expectCode, listDir, queuedId, servePetrel,
  stopPetrel, tempDir, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";

const SESSIONS = 4;
const MESSAGES_PER_SESSION = 100;
/** Kill instants, ms after the burst started: randomized within these windows. */
const KILL_WINDOWS: Array<[number, number]> = [[0, 40], [40, 150], [150, 300], [300, 500], [500, 800]];

interface Burst {
  /** queue id → [session, index] for every 250 received. */
  acknowledged: Map<string, [number, number]>;
  /** Sessions' promises; they end when the server dies. */
  done: Promise<void>;
}

function startBurst(port: number): Burst {
  const acknowledged = new Map<string, [number, number]>();
  const session = async (s: number): Promise<void> => {
    let c: SmtpClient | null = null;
    try {
      c = await SmtpClient.connect(port);
      await c.ehlo(`burst${s}.example.test`);
      for (let i = 0; i < MESSAGES_PER_SESSION; i++) {
        const r = await c.send(`sender${s}@example.org`, ["postmaster@example.test"], derivedMessage(s, i));
        acknowledged.set(queuedId(r), [s, i]);
      }
      await c.quit();
    } catch {
      // The server was killed under us: expected.
    } finally {
      c?.close();
    }
  };
  const done = Promise.all(Array.from({ length: SESSIONS }, (_, s) => session(s))).then(() => {});
  return { acknowledged, done };
}

for (const format of ["files", "journal"] as const) test(`SIGKILL mid-burst (spool.format ${format}): every acknowledged message survives whole after restart, nothing partial`, { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = await tempDir();
  const dataDir = join(dir, "data");
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test",
    workers: 1,
    dataDir,
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    spool: { format },
    log: { level: "info" },
  });
  const everAcknowledged = new Map<string, [number, number]>();
  let p: PetrelProcess | null = null;
  let killedMidBurst = 0;
  const counts: number[] = [];
  try {
    for (const [lo, hi] of KILL_WINDOWS) {
      p = await servePetrel(configPath, 1);
      // Recovery on start: nothing half-written survives in tmp/.
      assert.deepEqual(await listDir(join(dataDir, "spool", "tmp")), [], "tmp/ is empty after a restart");
      const burst = startBurst(p.port("mx"));
      const killAt = lo + Math.random() * (hi - lo);
      await new Promise((r) => setTimeout(r, killAt));
      p.kill("SIGKILL");
      const exit = await p.exited;
      p = null;
      assert.equal(exit.signal, "SIGKILL");
      await burst.done;
      if (burst.acknowledged.size < SESSIONS * MESSAGES_PER_SESSION) killedMidBurst++;
      for (const [id, k] of burst.acknowledged) everAcknowledged.set(id, k);
      counts.push(burst.acknowledged.size);
    }
    t.diagnostic(`acknowledged per round before the kill: ${counts.join(", ")}`);
    // Restart once more (runs open() recovery in the real server), then stop it cleanly.
    p = await servePetrel(configPath, 1);
    assert.deepEqual(await listDir(join(dataDir, "spool", "tmp")), [], "tmp/ is empty after the last restart");
    const last = p;
    const exit = await stopPetrel(p);
    p = null;
    assert.equal(exit.code, 0, `SIGTERM stops petrel with exit code 0 (got ${JSON.stringify(exit)}); stderr: ${last.stderr().slice(-2000)}; log: ${last.stdout().split("\n").filter((l) => /"level":[4-6]0/.test(l)).slice(-10).join("\n")}`);

    const warnings: string[] = [];
    const found = await whereabouts(dataDir, (m) => warnings.push(m));
    // Partial, never-acknowledged data cut at recovery is expected; anything else is not.
    assert.deepEqual(warnings.filter((w) => !/removed \d+ partial|unacknowledged partial records/.test(w)), [], "no spool file was quarantined");
    assert.deepEqual(await listDir(join(dataDir, "spool", "corrupt")), []);
    assert.deepEqual(await listDir(join(dataDir, "spool", "tmp")), []);

    assert.ok(everAcknowledged.size > 0, "some messages were acknowledged before the kills");
    assert.ok(killedMidBurst >= 3, `most kills landed mid-burst (${killedMidBurst} of ${KILL_WINDOWS.length}; acknowledged per round ${counts})`);
    for (const [id, [s, i]] of everAcknowledged) {
      const copies = found.get(id);
      assert.ok(copies && copies.length > 0, `acknowledged message ${id} (${s}-${i}) is in the spool or delivered`);
      for (const c of copies) {
        assert.ok(c.content.equals(derivedMessage(s, i)), `message ${id} (${s}-${i}) in ${c.where} is byte-identical`);
        if (c.mailFrom !== undefined) assert.equal(c.mailFrom, `sender${s}@example.org`);
      }
    }
    // Messages committed whose 250 never reached the client are allowed, but must be whole too.
    for (const [id, copies] of found) {
      if (everAcknowledged.has(id)) continue;
      for (const c of copies) {
        const key = derivedKey(c.content);
        assert.ok(key, `unacknowledged stored message ${id} is one of ours`);
        assert.ok(c.content.equals(derivedMessage(key.session, key.index)), `unacknowledged ${id} in ${c.where} is whole`);
      }
    }
  } finally {
    if (p) {
      p.kill("SIGKILL");
      await p.exited;
    }
    await cleanup();
  }
});

test("a restarted server keeps accepting mail on the same spool", { timeout: 20_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const dataDir = join(dir, "data");
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test",
    workers: 1,
    dataDir,
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    log: { level: "info" },
  });
  let p: PetrelProcess | null = null;
  try {
    p = await servePetrel(configPath, 1);
    const c = await SmtpClient.connect(p.port("mx"));
    await c.ehlo();
    const first = queuedId(await c.send("a@example.org", ["postmaster@example.test"], derivedMessage(9, 1)));
    // Kill with a transaction open and a half-sent body.
    expectCode(await c.cmd("MAIL FROM:<a@example.org>"), 250);
    expectCode(await c.cmd("RCPT TO:<postmaster@example.test>"), 250);
    expectCode(await c.cmd("DATA"), 354);
    c.write(derivedMessage(9, 2).subarray(0, 3000));
    p.kill("SIGKILL");
    await p.exited;
    c.close();
    p = await servePetrel(configPath, 1);
    const c2 = await SmtpClient.connect(p.port("mx"));
    await c2.ehlo();
    const second = queuedId(await c2.send("a@example.org", ["postmaster@example.test"], derivedMessage(9, 3)));
    await c2.quit();
    assert.equal((await stopPetrel(p)).code, 0);
    p = null;
    const found = await whereabouts(dataDir);
    assert.deepEqual([...found.keys()].sort(), [first, second].sort(), "both acknowledged messages, and not the half one");
    assert.ok(found.get(first)!.every((c) => c.content.equals(derivedMessage(9, 1))));
    assert.ok(found.get(second)!.every((c) => c.content.equals(derivedMessage(9, 3))));
  } finally {
    if (p) {
      p.kill("SIGKILL");
      await p.exited;
    }
    await cleanup();
  }
});
