/**
 * The queue manager's bounded active set over the queue store: at most
 * queue.activeLimit messages in memory whatever the backlog, the rest
 * claimed from the store as they fall due; start-up does not wait for the
 * spool to be reconciled with the store; queue state of older versions
 * (one JSON file per message) is moved into the store.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { FileSpool } from "../../src/spool/file-spool.ts";
import type { Spool } from "../../src/spool/spool.ts";
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest } from "../../src/queue/ports.ts";
import { createRouter } from "../../src/delivery/router.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { QueueManager, type QueueSettings } from "../../src/queue/queue-manager.ts";
import { SqliteQueueStore } from "../../src/queue/sqlite-queue-store.ts";
import { until } from "../support/until.ts";
import type { MessageState } from "../../src/queue/queue-state.ts";

const MIN = 60_000;
const LIMIT = 5;
const settings: QueueSettings = {
  minBackoff: 5 * MIN, maxBackoff: 60 * MIN, lifetime: 5 * 24 * 60 * MIN, bounceLifetime: 5 * 24 * 60 * MIN,
  delayWarning: 0, concurrency: 10, perDestination: 3, recipientsPerDelivery: 50, activeLimit: LIMIT,
};

/** A destination that is down (every delivery deferred) until `up`; counts what it delivered, by recipient. */
class Destination implements DeliveryAgent {
  up = false;
  readonly delivered = new Map<string, number>();
  inFlight = 0;
  maxInFlight = 0;
  async deliver(req: DeliveryRequest): Promise<DeliveryOutcomes> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((r) => setImmediate(r));
    this.inFlight--;
    const out = new Map<string, DeliveryOutcome>();
    for (const r of req.recipients) {
      if (this.up) this.delivered.set(r, (this.delivered.get(r) ?? 0) + 1);
      out.set(r, this.up ? { status: "delivered", dsn: "passed" } : { status: "deferred", enhanced: "4.4.1", diagnostic: "connection refused" });
    }
    return out;
  }
}

async function setup(dir: string, spool: Spool, clock: ManualClock, dest: Destination, legacyStateDir?: string): Promise<QueueManager> {
  return new QueueManager({
    spool,
    store: new SqliteQueueStore(join(dir, "state"), { fsync: false }),
    resolve: async () => ({ kind: "not-local" }),
    router: createRouter({ local: dest, remote: dest }),
    sendDsn: async () => null,
    clock,
    random: () => 0.5,
    log: pino({ level: "silent" }),
    settings,
    ...(legacyStateDir ? { legacyStateDir } : {}),
  });
}

async function spoolMessage(spool: Spool, clock: ManualClock, rcpt: string): Promise<string> {
  const w = await spool.create();
  await w.write(Buffer.from(`Subject: ${rcpt}\r\n\r\nhello\r\n`));
  await w.commit({
    mailFrom: "sender@far.test", recipients: [{ address: rcpt }], smtputf8: false, requireTls: false, receivedAt: clock.now(),
    client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "mx" },
  });
  return w.id;
}

test("a backlog larger than activeLimit: at most activeLimit messages in memory, every message delivered exactly once when the destination returns, across a restart", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-active-"));
  const clock = new ManualClock();
  const dest = new Destination();
  const spool = new FileSpool(join(dir, "spool"), { fsync: false });
  await spool.open();
  let queue = await setup(dir, spool, clock, dest);
  const N = 60;
  try {
    await queue.start();
    for (let i = 0; i < N; i++) {
      queue.enqueue(await spoolMessage(spool, clock, `r${i}@far.test`));
      assert.ok(queue.activeCount <= LIMIT);
    }
    await queue.idle();
    let t = await queue.totals();
    assert.equal(t.messages, N);
    assert.equal(t.waiting.deferred, N, "each tried once and deferred");
    assert.ok(t.activePeak <= LIMIT, `peak ${t.activePeak}`);
    assert.equal(t.active, 0, "deferred mail waits in the store, not in memory");
    const summary = await queue.summary();
    assert.equal(summary[0].total, N);

    // Restart with the backlog waiting; the destination is back when it falls due.
    await queue.stop();
    queue = await setup(dir, spool, clock, dest);
    await queue.start();
    await queue.recovered();
    await queue.idle();
    assert.equal((await queue.totals()).messages, N, "nothing lost in the restart");
    dest.up = true;
    clock.advance(settings.minBackoff);
    await queue.idle();
    t = await queue.totals();
    assert.equal(t.messages, 0);
    assert.ok(t.activePeak <= LIMIT && t.activePeak > 0, `peak ${t.activePeak}`);
    assert.equal(dest.delivered.size, N);
    assert.deepEqual([...dest.delivered.values()].filter((n) => n !== 1), [], "none delivered twice");
    assert.deepEqual(await spool.list(), []);
  } finally {
    await queue.stop();
    await spool.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("start() does not wait for the spool to be reconciled: new mail is delivered while the scan is held up; then the spooled message the store did not know is queued", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-active-"));
  const clock = new ManualClock();
  const dest = new Destination();
  dest.up = true;
  const inner = new FileSpool(join(dir, "spool"), { fsync: false });
  await inner.open();
  // Accepted before a crash, never known to the store.
  const old = await spoolMessage(inner, clock, "old@far.test");
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const spool: Spool = Object.assign(Object.create(inner) as Spool, {
    async *scan(batch?: number) {
      await held;
      yield* inner.scan(batch);
    },
  });
  const queue = await setup(dir, spool, clock, dest);
  try {
    await queue.start();
    let recovered = false;
    void queue.recovered().then(() => (recovered = true));
    queue.enqueue(await spoolMessage(inner, clock, "new@far.test"));
    // Bounded in time, not in event-loop turns: a loaded machine takes more turns to write the spool.
    await until(async () => dest.delivered.has("new@far.test"), "new mail delivered during recovery");
    assert.equal(dest.delivered.get("new@far.test"), 1, "new mail delivered during recovery");
    assert.equal(recovered, false);
    assert.equal(dest.delivered.has("old@far.test"), false);
    release();
    await queue.recovered();
    await queue.idle();
    assert.equal(dest.delivered.get("old@far.test"), 1);
    assert.equal(dest.delivered.get("new@far.test"), 1, "not twice: the scan skips what the queue has handled");
    assert.ok(!(await inner.list()).includes(old), "delivered and removed");
  } finally {
    // A failed assertion above must not leave stop() waiting for a scan that is never let go.
    release();
    await queue.stop();
    await inner.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("queue state of an older version (queue-state/<id>.json) moves into the store: attempts and deferral carry over, the file goes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-active-"));
  const clock = new ManualClock();
  const dest = new Destination();
  const spool = new FileSpool(join(dir, "spool"), { fsync: false });
  await spool.open();
  const id = await spoolMessage(spool, clock, "legacy@far.test");
  const legacy = join(dir, "legacy");
  await mkdir(legacy);
  const state: MessageState = {
    id, arrival: clock.now(), held: false,
    recipients: [{
      address: "legacy@far.test", original: "legacy@far.test", kind: "forward", status: "deferred", attempts: 3, nextAttempt: clock.now() + 10 * MIN,
      lastError: { enhanced: "4.4.1", diagnostic: "connection refused", at: clock.now() }, history: [],
    }],
  };
  await writeFile(join(legacy, `${id}.json`), JSON.stringify(state));
  await writeFile(join(legacy, "garbage.json"), "{");
  const queue = await setup(dir, spool, clock, dest, legacy);
  try {
    await queue.start();
    await queue.recovered();
    await queue.idle();
    assert.deepEqual(dest.delivered.size, 0, "not due yet: the deferral carried over");
    const shown = await queue.get(id);
    assert.equal(shown?.item.recipients[0].attempts, 3);
    assert.equal(shown?.item.recipients[0].status, "deferred");
    assert.deepEqual((await readdir(legacy)).sort(), ["garbage.json"], "moved files are deleted; a file that is no queue state is left alone");
    dest.up = true;
    clock.advance(10 * MIN);
    await queue.idle();
    assert.equal(dest.delivered.get("legacy@far.test"), 1);
  } finally {
    await queue.stop();
    await spool.close();
    await rm(dir, { recursive: true, force: true });
  }
});
