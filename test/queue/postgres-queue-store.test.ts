/**
 * The shared queue store of a cluster against a private PostgreSQL: two nodes' stores on one
 * database, time injected (a lease ends because the clock says so, never by sleeping).
 */
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import type { PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { PostgresQueueStore } from "../../src/storage/postgres/postgres-queue-store.ts";
import { LeaseLost, type StoredMessage } from "../../src/queue/queue-store.ts";
import type { RecipientState } from "../../src/queue/queue-state.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";

const LEASE = 30_000;
let server: PrivatePostgres;
let pool: PostgresPool;
const clock = new ManualClock();

before(async () => ({ server, pool } = await startMigratedPostgres({ poolSize: 8, node: "test" })));
after(() => stopMigratedPostgres(server, pool));
beforeEach(async () => {
  await pool.query("DELETE FROM queue_message");
});

function node(name: string): PostgresQueueStore {
  return new PostgresQueueStore({ pool, holder: name, leaseMs: LEASE, clock });
}

/** A message waiting in the store, held by no node (queued by `store`'s node, then left for later). */
async function park(store: PostgresQueueStore, m: StoredMessage): Promise<void> {
  assert.equal(await store.adopt(m), true);
  await store.save(m, { claimed: false });
}

let seq = 0;
function message(opts: { due?: number; tried?: boolean; held?: boolean; domain?: string; rcpts?: number } = {}): StoredMessage {
  const id = `m${String(++seq).padStart(6, "0")}`;
  const recipients: RecipientState[] = Array.from({ length: opts.rcpts ?? 1 }, (_, i) => ({
    address: `u${i}@${opts.domain ?? "far.test"}`, original: `u${i}@${opts.domain ?? "far.test"}`, kind: "forward",
    status: opts.tried ? "deferred" : "queued", attempts: opts.tried ? 1 : 0, nextAttempt: opts.due ?? clock.now(), history: [],
  }));
  return { state: { id, arrival: clock.now(), held: opts.held ?? false, recipients }, sender: "s@here.test", size: 100 };
}

test("a new message is adopted by exactly one node; the others see who holds it and cannot claim it", async () => {
  const a = node("a");
  const b = node("b");
  const m = message();
  assert.equal(await a.adopt(m), true);
  assert.equal(await b.adopt(m), false, "the second node to queue the same spooled message does not get it");
  assert.equal(await b.claim(m.state.id), null, "a live lease is not taken");
  const seen = await b.get(m.state.id);
  assert.equal(seen?.holder, "a");
  assert.equal(seen?.claimed, false);
  assert.equal((await a.get(m.state.id))?.claimed, true);
  // The node holding it counts it from memory; every other node counts it from the store.
  assert.equal((await a.counts()).messages, 0);
  assert.equal((await b.counts()).messages, 1);
  assert.deepEqual(await b.waiting(clock.now(), []), [{ domain: "far.test", status: "queued", bucket: 0, count: 1 }]);
  assert.deepEqual(await a.waiting(clock.now(), []), []);
});

test("nodes claiming at once never take the same message (FOR UPDATE SKIP LOCKED)", async () => {
  const a = node("a");
  const b = node("b");
  const c = node("c");
  const all = Array.from({ length: 60 }, () => message({ due: clock.now() - 1000 }));
  for (const m of all) await park(a, m);
  const claims = await Promise.all([a, b, c, a, b, c].map((s) => s.claimDue("incoming", clock.now(), 15)));
  const ids = claims.flat().map((m) => m.state.id);
  assert.equal(ids.length, 60, "every due message claimed");
  assert.equal(new Set(ids).size, 60, "none twice");
  assert.deepEqual(await a.claimDue("incoming", clock.now(), 10), []);
});

test("a node that stops renewing loses its leases when they end: another node claims the messages, the old holder's writes are refused", async () => {
  const a = node("a");
  const b = node("b");
  const m = message({ due: clock.now() });
  await park(a, m);
  assert.equal((await a.claimDue("incoming", clock.now(), 10)).length, 1);
  // Renewed in time, the lease holds.
  clock.advance(LEASE * 0.6);
  assert.deepEqual((await a.renew([m.state.id])).lost, []);
  clock.advance(LEASE * 0.6);
  assert.deepEqual(await b.claimDue("incoming", clock.now(), 10), [], "a renewed lease is not taken");
  assert.equal(await b.nextDue(), clock.now() + LEASE * 0.4 + 1, "the other nodes wake when the lease would end");
  // Not renewed: it ends, and b takes the message.
  clock.advance(LEASE + 1);
  const taken = await b.claimDue("incoming", clock.now(), 10);
  assert.deepEqual(taken.map((t) => t.state.id), [m.state.id]);
  assert.deepEqual((await a.renew([m.state.id])).lost, [m.state.id], "a learns it lost the message");
  await assert.rejects(a.save(m, { claimed: true }), LeaseLost);
  await a.remove(m.state.id);
  assert.notEqual(await b.get(m.state.id), null, "a's remove does not touch b's message");
  await b.remove(m.state.id);
  await assert.rejects(a.save(m, { claimed: true }), LeaseLost, "a message another node finished is never written back");
  assert.equal(await b.get(m.state.id), null);
});

test("a node's open() releases only its own earlier leases", async () => {
  const a = node("a");
  const b = node("b");
  const ma = message();
  const mb = message();
  await a.adopt(ma);
  await b.adopt(mb);
  await node("a").open();
  assert.equal((await b.get(ma.state.id))?.holder, undefined, "a restarted: what it held is free");
  assert.equal((await a.get(mb.state.id))?.holder, "b", "b's lease untouched");
  assert.equal((await b.claimDue("incoming", clock.now(), 10)).length, 1);
});

test("a person's operation on a message another node holds is handed to that node when it renews", async () => {
  const a = node("a");
  const tool = node("a/queue-tool");
  const m = message();
  await a.adopt(m);
  assert.equal(await tool.request(m.state.id, "hold"), "a");
  assert.equal(await tool.requestPending(m.state.id), true);
  const renewed = await a.renew([m.state.id]);
  assert.deepEqual([...renewed.requests], [[m.state.id, "hold"]]);
  assert.equal(await tool.requestPending(m.state.id), false);
  await a.save(m, { claimed: false });
  assert.equal(await tool.request(m.state.id, "hold"), null, "no live holder: the tool claims it itself");
});

test("a finished message whose node restarted before removing it is made due again at that node's start", async () => {
  const a = node("a");
  const m = message();
  await a.adopt(m);
  for (const r of m.state.recipients) r.status = "delivered";
  await a.save(m, { claimed: true });
  await node("a").open();
  const taken = await node("b").claimDue("incoming", clock.now(), 10);
  assert.deepEqual(taken.map((t) => t.state.id), [m.state.id]);
});

test("a finished message whose node died before removing it is made due again, so another node removes it", async () => {
  const a = node("a");
  const b = node("b");
  const m = message();
  await a.adopt(m);
  for (const r of m.state.recipients) r.status = "delivered";
  await a.save(m, { claimed: true });
  clock.advance(LEASE + 1);
  const taken = await b.claimDue("incoming", clock.now(), 10);
  assert.deepEqual(taken.map((t) => t.state.id), [m.state.id]);
  assert.equal(taken[0].state.recipients[0].status, "delivered");
});

test("aggregates, pages and retry --all cover the cluster", async () => {
  const a = node("a");
  const b = node("b");
  const deferred = message({ due: clock.now() + 3_600_000, tried: true, domain: "slow.test", rcpts: 2 });
  const held = message({ held: true, domain: "slow.test" });
  const theirs = message({ domain: "busy.test" });
  await park(a, deferred);
  await park(a, held);
  await b.adopt(theirs);
  const counts = await a.counts();
  assert.deepEqual(counts, { messages: 3, held: 1, oldestArrival: deferred.state.arrival });
  const rows = await a.waiting(clock.now(), []);
  const sum = (d: string, s: string) => rows.filter((r) => r.domain === d && r.status === s).reduce((n, r) => n + r.count, 0);
  assert.equal(sum("slow.test", "deferred"), 2);
  assert.equal(sum("slow.test", "queued"), 1);
  assert.equal(sum("busy.test", "queued"), 1);
  const page = await a.page(null, 10);
  assert.deepEqual(page.map((p) => [p.state.id, p.holder ?? null]), [[deferred.state.id, null], [held.state.id, null], [theirs.state.id, "b"]]);
  const retried = await a.retryAll(clock.now());
  assert.deepEqual(retried, { scheduled: 1, held: [held.state.id] });
  const claimed = await a.claimDue("deferred", clock.now(), 10);
  assert.deepEqual(claimed.map((c) => c.state.id), [deferred.state.id]);
  assert.equal(claimed[0].state.recipients[0].nextAttempt, clock.now(), "retry --all made it due now");
});

test("a lease of this node's that ended on a row no longer in its memory (its last write failed) is released at the next renewal", async () => {
  const a = node("a");
  const inMemory = message();
  const forgotten = message();
  await a.adopt(inMemory);
  await a.adopt(forgotten);
  clock.advance(LEASE + 1);
  const renewed = await a.renew([inMemory.state.id]);
  assert.deepEqual(renewed.lost, []);
  assert.equal((await a.get(inMemory.state.id))?.claimed, true);
  assert.equal((await a.get(forgotten.state.id))?.claimed, false, "free again: claimed like any waiting mail");
  assert.deepEqual((await a.claimDue("incoming", clock.now(), 10)).map((m) => m.state.id), [forgotten.state.id]);
});

test("the reconcile turn: one node at a time; a node starting again takes over the turn its crashed predecessor held", async () => {
  const a = node("recon-a");
  const b = node("recon-b");
  await pool.query("UPDATE queue_reconcile SET node = NULL, lease_until = NULL, finished_at = NULL");
  assert.equal(await a.reconcileTurn(0), true);
  assert.equal(await b.reconcileTurn(0, true), false, "another node is at it");
  // recon-a dies mid-scan; the same node name starts again within the lease.
  const again = node("recon-a");
  assert.equal(await again.reconcileTurn(0), false, "not its own turn outside a start");
  assert.equal(await again.reconcileTurn(0, true), true, "at its start it takes the turn over at once");
  await again.reconcileDone(true);
  assert.equal(await b.reconcileTurn(60_000), false, "finished within the interval");
  // A finish stamped by a node whose clock runs ahead does not keep a starting node from its look.
  await pool.query("UPDATE queue_reconcile SET finished_at = $1", [clock.now() + 3_600_000]);
  assert.equal(await b.reconcileTurn(0), false);
  assert.equal(await b.reconcileTurn(0, true), true, "at its start");
  await b.reconcileDone(true);
});
