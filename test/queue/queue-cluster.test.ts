/**
 * Three queue managers — three nodes of a cluster — over one private PostgreSQL and one shared
 * spool: each node has its own clock (a node that stops is a clock no longer moving, so its
 * leases end while the others' time goes on), deliveries go to agents that count what they get.
 * The cluster of real processes is test/e2e/cluster.test.ts.
 */
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { FileSpool } from "../../src/spool/file-spool.ts";
import type { Spool } from "../../src/spool/spool.ts";
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest } from "../../src/queue/ports.ts";
import { createRouter } from "../../src/delivery/router.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { QueueManager, type QueueSettings } from "../../src/queue/queue-manager.ts";
import { PostgresQueueStore } from "../../src/storage/postgres/postgres-queue-store.ts";
import { PostgresDestinationSlots } from "../../src/storage/postgres/postgres-destination-slots.ts";
import type { PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { until } from "../support/until.ts";

const LEASE = 30_000;
const MIN = 60_000;
const settings: QueueSettings = {
  minBackoff: 5 * MIN, maxBackoff: 60 * MIN, lifetime: 5 * 24 * 60 * MIN, bounceLifetime: 5 * 24 * 60 * MIN,
  delayWarning: 0, concurrency: 20, perDestination: 20, recipientsPerDelivery: 50, activeLimit: 1000,
};

let server: PrivatePostgres;
let pool: PostgresPool;
let dir: string;
let spool: Spool;

before(async () => ({ server, pool } = await startMigratedPostgres({ poolSize: 20, node: "test" })));
after(() => stopMigratedPostgres(server, pool));
beforeEach(async () => {
  await pool.query("DELETE FROM queue_message; DELETE FROM queue_destination_slot; UPDATE queue_reconcile SET node = NULL, lease_until = NULL, finished_at = NULL");
  if (dir) {
    await spool.close();
    await rm(dir, { recursive: true, force: true });
  }
  dir = await mkdtemp(join(tmpdir(), "petrel-cluster-"));
  spool = new FileSpool(join(dir, "spool"), { fsync: false });
  await spool.open();
});

/** Counts every delivery by recipient, and the most in flight at once across every node using it. */
class Sink implements DeliveryAgent {
  readonly delivered = new Map<string, number>();
  inFlight = 0;
  maxInFlight = 0;
  /** Deliveries wait for this (a slow destination; or one a node is stuck in when it dies). */
  gate: Promise<void> | null = null;
  outcome: DeliveryOutcome = { status: "delivered", dsn: "passed" };
  async deliver(req: DeliveryRequest): Promise<DeliveryOutcomes> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await (this.gate ?? new Promise((r) => setTimeout(r, 5)));
      const out = new Map<string, DeliveryOutcome>();
      for (const r of req.recipients) {
        if (this.outcome.status === "delivered") this.delivered.set(r, (this.delivered.get(r) ?? 0) + 1);
        out.set(r, this.outcome);
      }
      return out;
    } finally {
      this.inFlight--;
    }
  }
}

interface Node {
  readonly name: string;
  readonly clock: ManualClock;
  readonly queue: QueueManager;
  readonly dsns: string[];
}

function node(name: string, sink: Sink, options: { perDestination?: number; router?: boolean; holder?: string } = {}): Node {
  const clock = new ManualClock();
  const dsns: string[] = [];
  const queue = new QueueManager({
    spool,
    store: new PostgresQueueStore({ pool, holder: options.holder ?? name, leaseMs: LEASE, clock }),
    ...(options.router === false ? {} : { slots: new PostgresDestinationSlots({ pool, node: name, leaseMs: LEASE, clock, onError: () => {} }) }),
    node: name,
    reconcileInterval: 10 * MIN,
    resolve: async () => ({ kind: "not-local" }),
    ...(options.router === false ? {} : { router: createRouter({ local: sink, remote: sink }) }),
    sendDsn: async (id) => {
      dsns.push(id);
      return null;
    },
    clock,
    random: () => 0.5,
    log: pino({ level: "silent" }),
    settings: { ...settings, perDestination: options.perDestination ?? settings.perDestination },
  });
  return { name, clock, queue, dsns };
}

async function spoolMessage(rcpt: string): Promise<string> {
  const w = await spool.create();
  await w.write(Buffer.from(`Subject: ${rcpt}\r\n\r\nhello\r\n`));
  await w.commit({
    mailFrom: "sender@here.test", recipients: [{ address: rcpt }], smtputf8: false, requireTls: false, receivedAt: Date.UTC(2026, 0, 1),
    client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "submission" },
  });
  return w.id;
}

/** The living nodes' time moves on together (each renewal is a third of the lease). */
async function tick(nodes: readonly Node[], ms = LEASE / 3): Promise<void> {
  for (const n of nodes) n.clock.advance(ms);
  await new Promise((r) => setTimeout(r, 20));
}

async function stopAll(nodes: readonly Node[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.queue.stop()));
}

test("mail queued at any node — even at two at once — is delivered once", async () => {
  const sink = new Sink();
  const nodes = ["a", "b", "c"].map((n) => node(n, sink));
  try {
    for (const n of nodes) await n.queue.start();
    const ids: string[] = [];
    for (let i = 0; i < 45; i++) {
      const id = await spoolMessage(`r${i}@far.test`);
      ids.push(id);
      nodes[i % 3].queue.enqueue(id);
      // A node that finds the same spooled message (its reconcile) at the same moment.
      if (i % 5 === 0) nodes[(i + 1) % 3].queue.enqueue(id);
    }
    // Bounded generously: three managers, their database round trips and the rest of the suite share two cores.
    // Time moves a second a poll: a node whose request for more of the destination's slots was
    // refused (another held them all) asks again a second later by its clock.
    await until(async () => {
      await tick(nodes, 1000);
      return (await spool.list()).length === 0;
    }, "every message delivered and removed", {
      ms: 60_000,
      context: async () => `delivered ${sink.delivered.size}; queue rows ${JSON.stringify((await pool.query("SELECT id, lease_node, due, tried FROM queue_message")).rows)}`,
    });
    await Promise.all(nodes.map((n) => n.queue.idle()));
    assert.equal(sink.delivered.size, 45);
    assert.deepEqual([...sink.delivered].filter(([, n]) => n !== 1), [], "none twice");
    assert.equal((await pool.query("SELECT count(*)::int AS n FROM queue_message")).rows[0].n, 0);
  } finally {
    await stopAll(nodes);
  }
});

test("a node that dies mid-delivery: its messages wait for its leases to end, then the others deliver them; in-flight ones may be duplicated, the dead node's late writes are refused", async () => {
  const sink = new Sink();
  const stuck = new Sink();
  let unstick!: () => void;
  stuck.gate = new Promise((r) => (unstick = r));
  const a = node("a", stuck);
  const b = node("b", sink);
  const c = node("c", sink);
  try {
    await a.queue.start();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const id = await spoolMessage(`r${i}@far.test`);
      ids.push(id);
      a.queue.enqueue(id);
    }
    await until(() => stuck.inFlight === 10, "node a delivering all ten", { context: async () => `in flight ${stuck.inFlight} ${JSON.stringify((await pool.query("SELECT * FROM queue_destination_slot")).rows)} ${JSON.stringify((await pool.query("SELECT id, lease_node, due FROM queue_message")).rows)}` });
    await b.queue.start();
    await c.queue.start();
    // a stops answering (its clock no longer moves: no renewals). One lease time later, b and c take over.
    await tick([b, c]);
    assert.equal(sink.delivered.size, 0, "a live lease is respected");
    for (let i = 0; i < 6 && sink.delivered.size < 10; i++) await tick([b, c]);
    await until(async () => (await spool.list()).length === 0, "b and c delivered a's messages");
    assert.equal(sink.delivered.size, 10);
    // a wakes up: its deliveries were in flight when it "died", so they count as the duplicates at-least-once allows.
    unstick();
    await until(() => stuck.inFlight === 0, "a's deliveries end");
    await a.queue.idle();
    const dup = stuck.delivered.size;
    console.log(`# duplicates (in flight on the node that stopped): ${dup} of 10`);
    assert.equal((await pool.query("SELECT count(*)::int AS n FROM queue_message")).rows[0].n, 0, "a did not write its stale state back");
  } finally {
    unstick();
    await stopAll([a, b, c]);
  }
});

test("queue.perDestination holds across the cluster, not per node", async () => {
  const sink = new Sink();
  let open!: () => void;
  sink.gate = new Promise((r) => (open = r));
  const nodes = ["a", "b", "c"].map((n) => node(n, sink, { perDestination: 4 }));
  try {
    for (const n of nodes) await n.queue.start();
    for (let i = 0; i < 30; i++) nodes[i % 3].queue.enqueue(await spoolMessage(`r${i}@one.test`));
    await until(() => sink.inFlight === 4, "four deliveries in flight");
    await tick(nodes);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(sink.inFlight, 4, `no fifth anywhere in the cluster: ${JSON.stringify((await pool.query("SELECT * FROM queue_destination_slot")).rows)}`);
    const slots = await pool.query<{ n: number }>("SELECT sum(slots)::int AS n FROM queue_destination_slot WHERE destination = 'one.test'");
    assert.equal(slots.rows[0].n, 4);
    open();
    sink.gate = null;
    // Small steps: every node renews (its slots included) long before any lease could end in another node's view.
    for (let i = 0; i < 200 && (await spool.list()).length > 0; i++) await tick(nodes, 1000);
    await until(async () => (await spool.list()).length === 0, "all delivered");
    assert.equal(sink.delivered.size, 30);
    assert.ok(sink.maxInFlight <= 4, `at most 4 at once across the nodes (saw ${sink.maxInFlight})`);
  } finally {
    open();
    await stopAll(nodes);
  }
});

test("a node refused a destination's slots asks again a second later, not only at its next renewal", async () => {
  const sink = new Sink();
  let open!: () => void;
  sink.gate = new Promise((r) => (open = r));
  const [a, b] = ["a", "b"].map((n) => node(n, sink, { perDestination: 1 }));
  const slotRow = async (n: string) => (await pool.query<{ slots: number }>("SELECT slots FROM queue_destination_slot WHERE destination = 'one.test' AND node = $1", [n])).rows[0];
  try {
    for (const n of [a, b]) await n.queue.start();
    a.queue.enqueue(await spoolMessage("first@one.test"));
    await until(() => sink.inFlight === 1, "a delivers the first, holding the one slot");
    b.queue.enqueue(await spoolMessage("second@one.test"));
    await until(async () => (await slotRow("b"))?.slots === 0, "b asked and got nothing");
    open();
    sink.gate = null;
    await until(async () => sink.delivered.has("first@one.test") && (await slotRow("a")) === undefined, "a delivered and gave the slot back");
    await tick([a, b], 999);
    assert.equal(sink.delivered.has("second@one.test"), false, "not before the second has passed");
    await tick([a, b], 1);
    await until(() => sink.delivered.has("second@one.test"), "b delivers once the second has passed (its renewal is 9 s away)");
  } finally {
    open();
    await stopAll([a, b]);
  }
});

test("a bounce is sent once, by the node holding the message", async () => {
  const sink = new Sink();
  sink.outcome = { status: "failed", enhanced: "5.1.1", diagnostic: "550 no such user" };
  const nodes = ["a", "b", "c"].map((n) => node(n, sink));
  try {
    for (const n of nodes) await n.queue.start();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const id = await spoolMessage(`gone${i}@far.test`);
      ids.push(id);
      nodes[i % 3].queue.enqueue(id);
      nodes[(i + 2) % 3].queue.enqueue(id);
    }
    await until(async () => (await spool.list()).length === 0, "every message bounced and removed");
    const all = nodes.flatMap((n) => n.dsns).sort();
    assert.deepEqual(all, [...ids].sort(), "one DSN per message, from one node");
  } finally {
    await stopAll(nodes);
  }
});

test("petrel queue hold from elsewhere on a message a live node holds is done by that node; the listing says which node holds what", async () => {
  const sink = new Sink();
  let open!: () => void;
  sink.gate = new Promise((r) => (open = r));
  const a = node("a", sink);
  const tool = node("a", sink, { router: false, holder: "a/queue-tool" });
  try {
    await a.queue.start();
    await tool.queue.start();
    const id = await spoolMessage("r@far.test");
    a.queue.enqueue(id);
    await until(() => sink.inFlight === 1, "a delivering");
    const listed = await tool.queue.list();
    assert.equal(listed[0].node, "a");
    const held = tool.queue.hold(id, "test");
    // a picks the request up at its next renewal.
    for (let i = 0; i < 5; i++) {
      await tick([a, tool], LEASE / 12);
      await tick([a]);
    }
    assert.equal(await held, true);
    sink.outcome = { status: "deferred", enhanced: "4.4.1", diagnostic: "try later" };
    open();
    await until(async () => (await tool.queue.list())[0]?.held === true && (await tool.queue.list())[0]?.node === undefined, "held, back in the store");
    assert.equal(await tool.queue.delete(id, "test"), true, "an unleased message: the tool claims it and deletes it itself");
    assert.deepEqual(await spool.list(), []);
  } finally {
    open();
    await stopAll([a, tool]);
  }
});
