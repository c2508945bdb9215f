/**
 * The PostgreSQL spool while its database goes away and comes back: what needs the database fails
 * with SpoolError (so the client gets a 4xx), a message committed just before is still handed to
 * the queue, the same spool object works again once the server is back, and the rows of a writer
 * cut off mid-body are swept afterwards.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { withClient, type PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { PostgresSpool } from "../../src/storage/postgres/spool.ts";
import { SpoolError } from "../../src/spool/spool.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { readAll, sampleEnvelope, store } from "./helpers.ts";

let server: PrivatePostgres;
let pool: PostgresPool;

before(async () => ({ server, pool } = await startMigratedPostgres({ host: "127.0.61.2", poolSize: 10, node: "outage" })));
after(() => stopMigratedPostgres(server, pool));

const spoolError = (e: unknown) => e instanceof SpoolError;

for (const away of ["stop", "kill"] as const) {
  test(`postgres spool, database ${away === "stop" ? "stopped" : "SIGKILLed"}: commits fail with SpoolError, the fresh message still reaches the queue, and the same spool commits again once it is back`, async () => {
    const spool = new PostgresSpool({ pool, node: "outage", heartbeatEvery: 0 });
    await spool.open();
    try {
      const fresh = await store(spool, [Buffer.from("Subject: before\r\n\r\nbefore\r\n")], sampleEnvelope({ mailFrom: "before@example.org" }));
      const cutOff = await spool.create();
      await cutOff.write(Buffer.alloc(300 * 1024, 0x63));
      const small = await spool.create();
      await small.write(Buffer.from("Subject: during\r\n\r\nduring\r\n"));
      await (away === "stop" ? server.stop() : server.kill());
      try {
        // The queue reads a new message's envelope at once: it has it although the database is gone.
        assert.equal((await spool.readEnvelope(fresh)).mailFrom, "before@example.org");
        await assert.rejects(small.commit(sampleEnvelope()), spoolError);
        await assert.rejects(cutOff.write(Buffer.alloc(300 * 1024, 0x63)).then(() => cutOff.commit(sampleEnvelope())), spoolError);
        await assert.rejects(spool.list(), spoolError);
        await assert.rejects(readAll(spool.readBody(fresh)), spoolError);
      } finally {
        await server.start();
      }
      const after = await store(spool, [Buffer.from("Subject: after\r\n\r\nafter\r\n")]);
      assert.deepEqual(await spool.list(), [fresh, after].sort(), "what was committed, and what came after; nothing of the failed ones");
      assert.equal((await readAll(spool.readBody(fresh))).toString(), "Subject: before\r\n\r\nbefore\r\n");
      // The cut-off writer's first row may be left (its abort could not reach the database): swept once abandoned.
      const left = Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM spool_writer")).rows[0].n);
      await pool.query("UPDATE spool_writer SET touched_at = now() - interval '1 hour'");
      assert.equal(await spool.sweep(), left);
      const rows = await pool.query<{ id: string }>("SELECT DISTINCT id FROM spool_chunk c WHERE NOT EXISTS (SELECT 1 FROM spool_message m WHERE m.id = c.id)");
      assert.deepEqual(rows.rows.map((r) => r.id), [], "no body rows without a message");
    } finally {
      await spool.close();
      await pool.query("TRUNCATE spool_message, spool_chunk, spool_writer");
    }
  });
}

test("a connection checked out while the server shuts down is dropped, not a crash (pg throws an error no one listens for)", async () => {
  const before = pool.totalCount;
  await withClient(pool, async (client) => {
    await client.query("SELECT 1");
    const ended = new Promise((resolve) => client.once("end", resolve));
    // The server ends the session (57P01) between two queries of this work.
    await server.stop();
    await ended;
  }).finally(() => server.start());
  assert.ok(pool.totalCount <= before, "the dead connection is not given back to the pool");
  assert.equal((await pool.query<{ one: number }>("SELECT 1 AS one")).rows[0].one, 1);
});
