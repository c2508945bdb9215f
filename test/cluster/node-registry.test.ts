/**
 * The node registry against a private PostgreSQL, on injected clocks: health by heartbeat age
 * (healthy, late, gone), the heartbeat timer, a name alive elsewhere refused and free once gone,
 * a node whose name was taken told so, a dead process of the same host replaced at once.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type { PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { listNodes, NodeNameInUse, NodeRegistry } from "../../src/cluster/node-registry.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { until } from "../support/until.ts";

let server: PrivatePostgres;
let pool: PostgresPool;

before(async () => ({ server, pool } = await startMigratedPostgres({ host: "127.0.63.20", poolSize: 4, node: "registry-test" })));
after(() => stopMigratedPostgres(server, pool));

const T0 = Date.UTC(2026, 5, 1, 12);

test("health by heartbeat age: healthy, late after 15 s, gone after 60 s; the timer writes a heartbeat every 5 s", async (t) => {
  const clock = new ManualClock(T0);
  const a = await NodeRegistry.register({ pool, name: "age", host: "host-a", pid: 4242, version: "1.2.3", clock });
  t.after(() => a.close());
  const health = async (at: number) => (await listNodes(pool, at)).find((n) => n.name === "age")!;
  assert.deepEqual(await health(T0 + 14_999), {
    name: "age", host: "host-a", pid: 4242, version: "1.2.3", startedAt: new Date(T0).toISOString(), heartbeatAt: new Date(T0).toISOString(),
    heartbeatAgeSeconds: 15, stoppedAt: null, health: "healthy", self: false,
  });
  assert.equal((await health(T0 + 15_000)).health, "late");
  assert.equal((await health(T0 + 60_000)).health, "gone");
  clock.advance(5_000);
  await until(async () => (await health(T0)).heartbeatAt === new Date(T0 + 5_000).toISOString() || undefined, "the heartbeat at 5 s");
  assert.equal((await health(T0 + 20_000)).health, "late");
  assert.equal((await a.nodes()).find((n) => n.name === "age")!.self, true);
});

test("a name alive on another host is refused until it is gone; the old holder then learns its name was taken", async (t) => {
  const clockA = new ManualClock(T0);
  const lost: string[] = [];
  const a = await NodeRegistry.register({ pool, name: "dup", host: "host-a", pid: 1, version: "1", clock: clockA, onLost: (m) => lost.push(m) });
  t.after(() => a.close());
  const clockB = new ManualClock(T0 + 59_000);
  await assert.rejects(NodeRegistry.register({ pool, name: "dup", host: "host-b", pid: 2, version: "1", clock: clockB }), (err: unknown) => {
    assert.ok(err instanceof NodeNameInUse);
    assert.equal(err.message, "the node name dup is in use by a running node (host host-a, pid 1, last heartbeat 59 s ago): give this node another name (storage.node), or stop that one; a node that died counts as gone 60 s after its last heartbeat");
    return true;
  });
  clockB.advance(1_000); // a: silent for 60 s — gone
  const b = await NodeRegistry.register({ pool, name: "dup", host: "host-b", pid: 2, version: "1", clock: clockB });
  t.after(() => b.close());
  await a.beat();
  assert.equal(lost.length, 1);
  assert.match(lost[0], /^the node name dup was taken by another process/);
  const row = (await listNodes(pool, T0 + 60_000)).find((n) => n.name === "dup")!;
  assert.equal(row.host, "host-b", "the old holder's heartbeat did not write over the new one");
});

test("a node of this host whose process is dead is replaced at once; a cleanly stopped one from anywhere", async (t) => {
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  const deadPid = Number(dead.stdout);
  assert.ok(deadPid > 0);
  const clock = new ManualClock(T0);
  const old = await NodeRegistry.register({ pool, name: "crashed", pid: deadPid, version: "1", clock });
  // (the registration is left as a crash leaves it: no clean stop)
  void old;
  const again = await NodeRegistry.register({ pool, name: "crashed", version: "1", clock });
  t.after(() => again.close());
  assert.equal((await listNodes(pool, T0)).find((n) => n.name === "crashed")!.pid, process.pid);

  const s = await NodeRegistry.register({ pool, name: "stopped", host: "host-a", pid: 1, version: "1", clock });
  await s.close();
  assert.equal((await listNodes(pool, T0)).find((n) => n.name === "stopped")!.health, "gone");
  const other = await NodeRegistry.register({ pool, name: "stopped", host: "host-b", pid: 2, version: "1", clock });
  t.after(() => other.close());
});
