/**
 * A backlog to a destination that is down, drained across a crash: the real
 * `petrel serve` (queue.activeLimit 50) queues a few hundred messages for an
 * LMTP port where nothing listens; the destination comes up (a plain TCP
 * relay on that port to a real Dovecot LMTP) and `petrel queue retry --all`
 * starts the drain; halfway the destination goes away again and Petrel is
 * SIGKILLed with most of the backlog waiting (claimed into its active set,
 * or at rest in the queue store); the queue tools read the queue offline;
 * Petrel restarts, the destination comes back, the drain ends. Counted at the
 * receiving peer by Message-ID: every message exactly once. Throughout,
 * `petrel status` shows at most 50 messages in memory.
 *
 * The destination goes away gracefully — the relay stops accepting and lets
 * the sessions it carries end — so that when Petrel is killed no delivery is
 * in flight and every answer Dovecot gave is recorded. A kill between a
 * peer's 250 and Petrel's record of it would deliver that message again
 * after the restart (at-least-once, as in every MTA); excluding that instant
 * keeps the count here exact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  SmtpClient, expectCode, freePort, runPetrel, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";
import { startDovecot, type Dovecot } from "./dovecot.ts";
import { until } from "../support/until.ts";

const MESSAGES = 300;
const ACTIVE_LIMIT = 50;
const SESSIONS = 3;
const RECIPIENT = "postmaster@example.test";

interface QueueStatusJson {
  messages: number;
  active: number;
  activeLimit: number;
  activePeak: number;
  waiting: { queued: number; delivering: number; deferred: number };
}

async function cli(configPath: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runPetrel([...args, "--config", configPath]);
  const exit = await p.exited;
  return { code: exit.code, stdout: p.stdout(), stderr: p.stderr() };
}

/** The running server's queue, as `petrel status --json` shows it; memory bound checked on every look. */
async function queueStatus(configPath: string): Promise<QueueStatusJson> {
  const r = await cli(configPath, ["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const q = (JSON.parse(r.stdout) as { queue: QueueStatusJson }).queue;
  assert.ok(q.active <= ACTIVE_LIMIT && q.activePeak <= ACTIVE_LIMIT, `at most ${ACTIVE_LIMIT} messages in memory: ${JSON.stringify(q)}`);
  assert.equal(q.activeLimit, ACTIVE_LIMIT);
  return q;
}

/** Message-IDs of what Dovecot stored for RECIPIENT (its Maildir: new/ and cur/). */
async function delivered(dovecot: Dovecot): Promise<string[]> {
  const box = join(dovecot.mailRoot, "example.test", "postmaster");
  const ids: string[] = [];
  for (const sub of ["new", "cur"]) {
    const names = await readdir(join(box, sub)).catch(() => [] as string[]);
    for (const name of names) {
      const text = await readFile(join(box, sub, name), "latin1").catch(() => "");
      const m = /^Message-ID: <([^>]+)>/im.exec(text);
      if (m) ids.push(m[1]);
    }
  }
  return ids;
}

async function countDelivered(dovecot: Dovecot): Promise<number> {
  const box = join(dovecot.mailRoot, "example.test", "postmaster");
  let n = 0;
  for (const sub of ["new", "cur"]) n += (await readdir(join(box, sub)).catch(() => [])).length;
  return n;
}

/** The destination: while up, a TCP relay on `port` to Dovecot's LMTP; down() stops accepting and resolves once its sessions ended. */
function destination(port: number, dovecot: Dovecot): { up(): Promise<void>; down(): Promise<void> } {
  let server: net.Server | null = null;
  return {
    async up() {
      const s = net.createServer((client) => {
        const upstream = net.connect(dovecot.lmtpPort, "127.0.0.1");
        client.pipe(upstream).pipe(client);
        client.on("error", () => upstream.destroy());
        upstream.on("error", () => client.destroy());
      });
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.listen(port, "127.0.0.1", resolve);
      });
      server = s;
    },
    down() {
      const s = server;
      server = null;
      return new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()));
    },
  };
}

async function inject(port: number): Promise<void> {
  await Promise.all(Array.from({ length: SESSIONS }, async (_, s) => {
    const c = await SmtpClient.connect(port);
    try {
      await c.ehlo(`client${s}.example.org`);
      for (let i = s; i < MESSAGES; i += SESSIONS) {
        const content = `From: <sender@example.org>\r\nTo: <${RECIPIENT}>\r\nSubject: backlog ${i}\r\nMessage-ID: <backlog-${i}@example.org>\r\n\r\nmessage ${i}\r\n`;
        expectCode(await c.send("sender@example.org", [RECIPIENT], content), 250);
      }
      await c.quit();
    } finally {
      c.close();
    }
  }));
}

test("a backlog drained across a SIGKILL: every message reaches the peer exactly once, at most queue.activeLimit in memory", { timeout: 180_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const lmtpPort = await freePort();
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test",
    workers: 1,
    dataDir: join(dir, "data"),
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    // Nothing listens there yet: the destination is down.
    transport: [{ domains: ["example.test"], type: "lmtp", host: "127.0.0.1", port: lmtpPort }],
    queue: { activeLimit: ACTIVE_LIMIT, perDestination: 5 },
    // A session per delivery: when the destination goes away, the sessions it carries end by themselves.
    outbound: { connectionReuse: 0 },
    log: { level: "info" },
  });
  let p: PetrelProcess | null = null;
  const dovecot = await startDovecot([{ address: RECIPIENT, password: "unused" }]);
  const dest = destination(lmtpPort, dovecot);
  try {
    p = await servePetrel(configPath, 1);
    await inject(p.port("mx"));
    // Every message tried once and deferred; most of them wait in the store, not in memory.
    await until(async () => (await queueStatus(configPath)).waiting.deferred === MESSAGES, "every message to be deferred", { ms: 60_000 });
    const before = await queueStatus(configPath);
    assert.equal(before.messages, MESSAGES);

    // The destination comes back; a person asks for the drain (postqueue -f).
    await dest.up();
    const retry = await cli(configPath, ["queue", "retry", "--all"]);
    assert.equal(retry.code, 0, retry.stderr);
    assert.equal(retry.stdout, `${MESSAGES} message(s) scheduled for delivery now\n`);
    await until(async () => (await countDelivered(dovecot)) >= MESSAGES / 5, "a fifth of the backlog to be delivered", { ms: 60_000 });
    // Gone again mid-drain; wait until no delivery is in flight and each success is recorded (logged "removed").
    await dest.down();
    const server = p;
    const midway = await until(async () => {
      const q = await queueStatus(configPath);
      const logs = server.logs();
      const ok = new Set(logs.filter((l) => l.msg === "delivered").map((l) => l.queueId));
      const removed = new Set(logs.filter((l) => l.msg === "removed").map((l) => l.queueId));
      return q.waiting.delivering === 0 && [...ok].every((id) => removed.has(id)) && q;
    }, "no delivery in flight, every success recorded", { ms: 60_000 });
    const firstRound = await countDelivered(dovecot);
    assert.ok(firstRound < MESSAGES, `the drain was interrupted midway (${firstRound} of ${MESSAGES} delivered)`);
    assert.equal(midway.messages, MESSAGES - firstRound, "delivered messages left the queue; the others wait");

    p.kill("SIGKILL");
    assert.equal((await p.exited).signal, "SIGKILL");
    p = null;

    // The queue tools, offline (the data directory's lock is free): the store's view after the crash.
    const summary = await cli(configPath, ["queue", "summary", "--json"]);
    assert.equal(summary.code, 0, summary.stderr);
    assert.equal(summary.stderr, "", "nothing but the answer (no runtime warnings)");
    const rows = (JSON.parse(summary.stdout) as { rows: { domain: string; total: number }[] }).rows;
    assert.deepEqual(rows.map((r) => [r.domain, r.total]), [["TOTAL", MESSAGES - firstRound], ["example.test", MESSAGES - firstRound]]);
    const list = await cli(configPath, ["queue", "list", "--limit", "10"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`-- ${MESSAGES - firstRound} messages, ${MESSAGES - firstRound} recipients waiting; the oldest 10 shown`));

    p = await servePetrel(configPath, 1);
    const restarted = await queueStatus(configPath);
    assert.equal(restarted.messages, MESSAGES - firstRound, "nothing lost in the crash");
    await dest.up();
    const again = await cli(configPath, ["queue", "retry", "--all"]);
    assert.equal(again.code, 0, again.stderr);
    await until(async () => (await queueStatus(configPath)).messages === 0, "the queue to drain", { ms: 120_000 });
    const end = await queueStatus(configPath);
    assert.ok(end.activePeak > 0 && end.activePeak <= ACTIVE_LIMIT);

    const ids = await delivered(dovecot);
    const seen = new Map<string, number>();
    for (const id of ids) seen.set(id, (seen.get(id) ?? 0) + 1);
    const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
    assert.deepEqual(twice, [], "no message delivered twice");
    const missing = Array.from({ length: MESSAGES }, (_, i) => `backlog-${i}@example.org`).filter((id) => !seen.has(id));
    assert.deepEqual(missing, [], "no message lost");
    assert.equal(ids.length, MESSAGES);
  } finally {
    SmtpClient.closeAll();
    if (p) await stopPetrel(p);
    await dest.down();
    await dovecot.stop();
    await cleanup();
  }
});
