/**
 * `petrel queue …` with storage.kind postgres and no server on this host: the tools read and
 * change the cluster's queue in the database, name the node holding each message, and leave a
 * message a live node holds to that node (the request goes through the database).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { queueCommand } from "../../src/cli/queue-commands.ts";
import { PostgresSpool } from "../../src/storage/postgres/spool.ts";
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest } from "../../src/queue/ports.ts";
import { createRouter } from "../../src/delivery/router.ts";
import { systemClock } from "../../src/mail/clock.ts";
import { QueueManager } from "../../src/queue/queue-manager.ts";
import { PostgresQueueStore } from "../../src/storage/postgres/postgres-queue-store.ts";
import type { PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { postgresConfigFile, startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { io } from "../e2e/fixtures/mta-helpers.ts";
import { until } from "../support/until.ts";

const LEASE = 3_000;
let server: PrivatePostgres;
let pool: PostgresPool;

before(async () => ({ server, pool } = await startMigratedPostgres({ poolSize: 8, node: "test" })));
after(() => stopMigratedPostgres(server, pool));

/** hang@ waits until released; later@ is deferred. */
class Agent implements DeliveryAgent {
  release!: () => void;
  private readonly gate = new Promise<void>((r) => (this.release = r));
  async deliver(req: DeliveryRequest): Promise<DeliveryOutcomes> {
    const out = new Map<string, DeliveryOutcome>();
    for (const r of req.recipients) {
      if (r.startsWith("hang@")) await this.gate;
      out.set(r, r.startsWith("hang@") ? { status: "delivered", dsn: "passed" } : { status: "deferred", enhanced: "4.4.1", diagnostic: "try later" });
    }
    return out;
  }
}

test("list, show, hold and delete against the cluster without a local server", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-queue-cluster-cli-"));
  // storage.kind postgres: the spool is the cluster's too, where the tool reads it.
  const spool = new PostgresSpool({ pool, node: "mx1", onWarning: () => {} });
  await spool.open();
  const agent = new Agent();
  const node = new QueueManager({
    spool,
    store: new PostgresQueueStore({ pool, holder: "mx1", leaseMs: LEASE, clock: systemClock }),
    node: "mx1",
    resolve: async () => ({ kind: "not-local" }),
    router: createRouter({ local: agent, remote: agent }),
    sendDsn: async () => null,
    clock: systemClock,
    log: pino({ level: "silent" }),
    settings: DEFAULTS.queue,
  });
  const spoolMessage = async (rcpt: string): Promise<string> => {
    const w = await spool.create();
    await w.write(Buffer.from(`Subject: ${rcpt}\r\n\r\nhello\r\n`));
    await w.commit({
      mailFrom: "sender@here.test", recipients: [{ address: rcpt }], smtputf8: false, requireTls: false, receivedAt: Date.now(),
      client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "submission" },
    });
    return w.id;
  };
  try {
    const config = await postgresConfigFile(server, dir, { node: "mx1", leaseTime: "3s" });
    await node.start();
    const busy = await spoolMessage("hang@far.test");
    const waiting = await spoolMessage("later@slow.test");
    node.enqueue(busy);
    node.enqueue(waiting);
    await until(async () => (await pool.query("SELECT 1 FROM queue_message WHERE id = $1 AND lease_node IS NULL", [waiting])).rows.length === 1, "the deferred message back in the store");

    let c = io();
    assert.equal(await queueCommand(["list", "--config", config], c.io), 0, c.err());
    assert.match(c.out(), new RegExp(`${busy} .*\\n  from <sender@here.test>\\n  on node mx1\\n  to   <hang@far.test>`));
    assert.match(c.out(), new RegExp(`${waiting} .*\\n  from <sender@here.test>\\n  to   <later@slow.test>  deferred, 1 attempt`));
    assert.match(c.out(), /-- 2 messages, 2 recipients waiting/);

    c = io();
    assert.equal(await queueCommand(["show", busy, "--json", "--config", config], c.io), 0, c.err());
    assert.equal((JSON.parse(c.out()) as { item: { node?: string } }).item.node, "mx1");

    // mx1 is delivering it: the hold is mx1's to do, asked through the database.
    c = io();
    assert.equal(await queueCommand(["hold", busy, "--config", config], c.io), 0, c.err());
    assert.equal(c.out(), `Held ${busy}\n`);
    assert.equal((await node.get(busy))?.item.held, true, "the node holding it applied the hold");

    // Nobody holds the deferred one: the tool claims it and deletes it.
    c = io();
    assert.equal(await queueCommand(["delete", waiting, "--yes", "--config", config], c.io), 0, c.err());
    assert.equal((await pool.query("SELECT 1 FROM queue_message WHERE id = $1", [waiting])).rows.length, 0);
    assert.deepEqual((await spool.list()).sort(), [busy]);

    c = io();
    assert.equal(await queueCommand(["hold", "01M8ZZZZZZZZZZZZZZ", "--config", config], c.io), 1);
    assert.match(c.err(), /no message|not/i);
  } finally {
    agent.release();
    await node.stop();
    await spool.close();
    await rm(dir, { recursive: true, force: true });
  }
});
