/**
 * SMTP workers (`workers: 2`): sessions are served by two processes while
 * the one spool and the one queue manager stay in the primary. What a user
 * depends on: every message that got its 250 is delivered exactly once —
 * whichever worker took it, when a worker is killed mid-burst, across a
 * restart of the whole server —, connections are spread over the workers,
 * a dead worker is started again while the server keeps listening, the
 * per-client connection cap holds across workers, and `petrel status`
 * shows them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { start, type Running } from "./fixtures/mta-helpers.ts";
import { SmtpClient, freePort, queuedId, runPetrel, servePetrel, stopPetrel, tempDir, writeConfig } from "./fixtures/robust-helpers.ts";
import { until } from "../support/until.ts";

const TWO = { workers: 2 };

/** Send `perConnection` messages on each of `connections` parallel connections; the subjects that got a 250, and the ids. */
async function burst(port: number, connections: number, perConnection: number, tag: string): Promise<{ accepted: Map<string, string>; failed: number }> {
  const accepted = new Map<string, string>();
  let failed = 0;
  await Promise.all(Array.from({ length: connections }, async (_, c) => {
    let client: SmtpClient | null = null;
    try {
      client = await SmtpClient.connect(port);
      await client.ehlo();
      for (let m = 0; m < perConnection; m++) {
        const subject = `${tag}-${c}-${m}`;
        const r = await client.send("sender@far.test", ["alice@example.test"], `Subject: ${subject}\r\n\r\nbody of ${subject}\r\n`);
        if (r.code === 250) accepted.set(subject, queuedId(r));
        else failed++;
      }
      await client.quit();
    } catch {
      failed++;
      client?.close();
    }
  }));
  return { accepted, failed };
}

/** Subject → how many copies are in alice's Maildir. */
async function delivered(r: Running): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const m of await r.maildir("alice@example.test")) {
    const subject = /^Subject: (\S+)$/m.exec(m)?.[1] ?? "?";
    counts.set(subject, (counts.get(subject) ?? 0) + 1);
  }
  return counts;
}

function assertExactlyOnce(copies: Map<string, number>, accepted: Iterable<string>): void {
  for (const subject of accepted) assert.equal(copies.get(subject), 1, `${subject}: ${copies.get(subject) ?? 0} copies`);
}

test("with two workers, mail over many connections is accepted and delivered exactly once, and both workers serve", async () => {
  const r = await start(TWO);
  try {
    assert.equal(r.mta.workers?.status().length, 2);
    const { accepted, failed } = await burst(r.mx, 12, 4, "many");
    assert.equal(failed, 0);
    assert.equal(accepted.size, 48);
    assert.equal(new Set(accepted.values()).size, 48, "queue ids are unique across workers");
    await until(async () => (await r.maildir("alice@example.test")).length >= 48 && (await r.mta.smtp.spool.list()).length === 0, "delivery of 48");
    const copies = await delivered(r);
    assert.equal(copies.size, 48);
    assertExactlyOnce(copies, accepted.keys());
    const workers = r.mta.workers!.status();
    for (const w of workers) assert.ok(w.connections >= 3, `worker ${w.index} served ${w.connections} of 12 connections`);
    assert.equal(workers.reduce((n, w) => n + w.connections, 0), 12);
    // A body larger than a worker keeps until commit streams to the primary, whole.
    const big = (randomBytes(225 * 1024).toString("base64").match(/.{1,76}/g) ?? []).join("\r\n");
    const c = await SmtpClient.connect(r.mx);
    await c.ehlo();
    assert.equal((await c.send("sender@far.test", ["bob@example.test"], `Subject: big\r\n\r\n${big}\r\n`)).code, 250);
    await c.quit();
    const [bigCopy] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "the big message");
    assert.ok(bigCopy.endsWith(`Subject: big\n\n${big.replaceAll("\r\n", "\n")}\n`), "the 300 KiB body arrived intact");
    // The metrics count the whole server: the workers' events reach the primary's bus.
    const metrics = await r.mta.admin.metrics!.registry.metrics();
    assert.match(metrics, /^petrel_messages_accepted_total\{origin="smtp",role="mx"\} 49$/m);
    assert.match(metrics, /^petrel_connections_total\{role="mx"\} 13$/m);
    assert.match(metrics, /^petrel_worker_sessions\{worker="1"\} 0$/m);
  } finally {
    SmtpClient.closeAll();
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("a worker killed with SIGKILL mid-burst: every acknowledged message is delivered, the worker is started again, the server keeps listening", async () => {
  const r = await start(TWO);
  try {
    const pool = r.mta.workers!;
    const victim = pool.status()[0];
    const sending = burst(r.mx, 10, 8, "kill");
    // Once both workers are serving messages, kill one where it stands.
    await until(() => pool.status().every((w) => w.sessions > 0) && pool.status()[0].connections > 0, "sessions on both workers");
    process.kill(victim.pid!, "SIGKILL");
    const { accepted, failed } = await sending;
    assert.ok(failed > 0, "the killed worker's connections broke");
    assert.ok(accepted.size > 0);
    const restarted = await until(() => {
      const w = pool.status()[0];
      return w.state === "running" && w.pid !== victim.pid && w.restarts === 1 && w;
    }, "worker 0 started again");
    assert.notEqual(restarted.pid, null);
    // The server keeps listening, and the new worker serves too.
    const after = await burst(r.mx, 4, 1, "after");
    assert.equal(after.failed, 0);
    for (const s of after.accepted.keys()) accepted.set(s, after.accepted.get(s)!);
    await until(async () => (await r.mta.smtp.spool.list()).length === 0 && (await delivered(r)).size >= accepted.size, "delivery of every acknowledged message");
    assertExactlyOnce(await delivered(r), accepted.keys());
  } finally {
    SmtpClient.closeAll();
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("a restart of the whole server delivers what both workers had queued", async () => {
  const down = await freePort();
  const deferToDeadLmtp = { transport: [{ domains: ["example.test"], type: "lmtp", host: "127.0.0.1", port: down }] };
  const r = await start({ ...TWO, ...deferToDeadLmtp });
  let dir = r.dir;
  let second: Running | null = null;
  try {
    const { accepted, failed } = await burst(r.mx, 8, 3, "restart");
    assert.equal(failed, 0);
    assert.equal(accepted.size, 24);
    for (const w of r.mta.workers!.status()) assert.ok(w.connections > 0, `worker ${w.index} took connections`);
    await until(async () => (await r.mta.queue.totals()).waiting.deferred === 24, "24 deferred");
    await r.stop();
    second = await start(TWO, dir);
    dir = second.dir;
    await second.mta.queue.retry("all");
    await until(async () => (await second!.maildir("alice@example.test")).length >= 24 && (await second!.mta.smtp.spool.list()).length === 0, "delivery after restart");
    const copies = await delivered(second);
    assert.equal(copies.size, 24);
    assertExactlyOnce(copies, accepted.keys());
  } finally {
    SmtpClient.closeAll();
    await r.stop();
    await second?.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a reload reaches every worker: new connections on both are served by the new limits", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-workers-reload-"));
  const configPath = join(dir, "petrel.yaml");
  const r = await start({ ...TWO, limits: { shutdownGrace: 2, recipients: 2 } }, dir, undefined, { configPath });
  const rcpts = async (n: number): Promise<number[]> => {
    const c = await SmtpClient.connect(r.mx);
    await c.ehlo();
    await c.cmd("MAIL FROM:<s@far.test>");
    const codes: number[] = [];
    for (let i = 0; i < n; i++) codes.push((await c.cmd(`RCPT TO:<alice+${i}@example.test>`)).code);
    await c.quit();
    return codes;
  };
  try {
    // Sequential connections alternate between the two idle workers.
    for (let i = 0; i < 2; i++) assert.deepEqual(await rcpts(3), [250, 250, 452]);
    const raw = JSON.parse(await readFile(configPath, "utf8")) as { limits: Record<string, number> };
    raw.limits.recipients = 3;
    await writeFile(configPath, JSON.stringify(raw));
    const report = await r.mta.reload();
    assert.ok(report.applied.includes("limits"));
    for (let i = 0; i < 2; i++) assert.deepEqual(await rcpts(4), [250, 250, 250, 452]);
    for (const w of r.mta.workers!.status()) assert.equal(w.connections, 2, `worker ${w.index}: one connection before and one after the reload`);
  } finally {
    SmtpClient.closeAll();
    await r.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("the per-client connection cap holds across workers", async () => {
  const r = await start({ ...TWO, limits: { shutdownGrace: 2, connectionsPerClient: 2 } });
  const open: SmtpClient[] = [];
  try {
    for (let i = 0; i < 2; i++) open.push(await SmtpClient.connect(r.mx));
    // The two admitted connections are on different workers: each alone would admit another.
    await until(() => r.mta.workers!.status().every((w) => w.sessions === 1), "one session on each worker");
    const third = await SmtpClient.connect(r.mx, { greeting: false });
    const refusal = await third.read();
    assert.equal(refusal.code, 421);
    assert.match(refusal.text, /4\.7\.0 Error: too many connections from your address/);
    third.close();
    // From another address the cap is its own.
    const other = await SmtpClient.connect(r.mx, { localAddress: "127.0.50.1" });
    assert.equal((await other.ehlo()).code, 250);
    other.close();
    // A closed connection frees its place.
    await open.shift()!.quit();
    await until(async () => {
      const c = await SmtpClient.connect(r.mx, { greeting: false });
      const reply = await c.read();
      c.close();
      return reply.code === 220;
    }, "a place freed");
  } finally {
    SmtpClient.closeAll();
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("petrel serve with workers: 2 — petrel status lists them, and the workers stop with the server", async () => {
  const { dir, cleanup } = await tempDir("petrel-workers-");
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test", dataDir: `${dir}/data`, domains: ["example.test"], workers: 2,
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    limits: { shutdownGrace: 1000 },
  });
  const p = await servePetrel(configPath, 1, 45_000); // two more Node processes to start, on a loaded machine
  try {
    const port = p.listening[0].port;
    const c = await SmtpClient.connect(port);
    await c.ehlo();
    const status = runPetrel(["status", "--config", configPath, "--json"]);
    assert.equal((await status.exited).code, 0, status.stderr());
    const st = JSON.parse(status.stdout()) as { workers: { index: number; pid: number; state: string; sessions: number }[] };
    assert.deepEqual(st.workers.map((w) => [w.index, w.state]), [[0, "running"], [1, "running"]]);
    assert.equal(st.workers.reduce((n, w) => n + w.sessions, 0), 1);
    const text = runPetrel(["status", "--config", configPath]);
    await text.exited;
    assert.match(text.stdout(), /SMTP workers: 2\n  worker 0 +running +pid \d+/);
    await c.quit();
    const pids = st.workers.map((w) => w.pid);
    assert.equal((await stopPetrel(p)).code, 0);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, `worker ${pid} stopped`);
  } finally {
    SmtpClient.closeAll();
    if (p.child.exitCode === null) await stopPetrel(p);
    await cleanup();
  }
});

test("workers: a clear error for what is not a number of processes", async () => {
  const { parseConfig } = await import("../../src/config/load.ts");
  for (const bad of [0, -1, 2.5, "many", 1000]) {
    assert.throws(() => parseConfig({ workers: bad }, "test"), (err: Error) => {
      assert.match(err.message, /workers/);
      assert.match(err.message, /expected "auto" or a whole number of processes from 1 to 256/);
      return true;
    });
  }
  assert.equal(parseConfig({}, "test").workers, "auto");
  assert.equal(parseConfig({ workers: 3 }, "test").workers, 3);
});

test("workers: auto leaves a CPU to the main process and runs one process on one or two CPUs", async () => {
  const { workerCount } = await import("../../src/workers/worker-count.ts");
  assert.equal(workerCount("auto", 1), 1);
  assert.equal(workerCount("auto", 2), 1, "two CPUs: a second process costs more than it gains");
  assert.equal(workerCount("auto", 4), 3);
  assert.equal(workerCount("auto", 16), 15);
  assert.equal(workerCount("auto", 128), 32, "at most 32");
  assert.equal(workerCount(2, 1), 2, "a number is taken as it is");
});
