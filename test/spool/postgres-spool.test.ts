/**
 * The PostgreSQL spool against a private PostgreSQL: a message exists only once committed, comes
 * back byte-identical, concurrent commits share transactions (counted by the database's own
 * transaction ids, not only by the spool), scans go in batches, removal takes the body rows too,
 * and the rows of writers that never commit are cleaned up — never those of a live writer.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { PostgresSpool, type PostgresSpoolOptions } from "../../src/storage/postgres/spool.ts";
import { SpoolError } from "../../src/spool/spool.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { bigBody, readAll, sampleEnvelope, store } from "./helpers.ts";

let server: PrivatePostgres;
let pool: PostgresPool;

before(async () => ({ server, pool } = await startMigratedPostgres({ host: "127.0.61.1", poolSize: 20, node: "unit" })));
after(() => stopMigratedPostgres(server, pool));

async function withSpool(fn: (spool: PostgresSpool, warnings: string[]) => Promise<void>, options: Partial<PostgresSpoolOptions> = {}): Promise<void> {
  const warnings: string[] = [];
  const spool = new PostgresSpool({ pool, node: "unit", heartbeatEvery: 0, onWarning: (m) => warnings.push(m), ...options });
  await spool.open();
  try {
    await fn(spool, warnings);
  } finally {
    await spool.close();
    await pool.query("TRUNCATE spool_message, spool_chunk, spool_writer");
  }
}

async function count(table: "spool_message" | "spool_chunk" | "spool_writer", id?: string): Promise<number> {
  const r = id === undefined
    ? await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)
    : await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE id = $1`, [id]);
  return Number(r.rows[0].n);
}

/** The next transaction id the database will assign: its difference counts write transactions. */
async function nextXid(): Promise<number> {
  return Number((await pool.query<{ x: string }>("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x")).rows[0].x);
}

function oddChunks(body: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  const sizes = [1, 7, 16383, 65536, 100_000, 3];
  for (let off = 0, i = 0; off < body.length; i++) {
    const n = Math.min(sizes[i % sizes.length], body.length - off);
    chunks.push(body.subarray(off, off + n));
    off += n;
  }
  return chunks;
}

test("postgres spool: a message is listed only once committed, and comes back exactly: envelope, body; one transaction", async () => {
  await withSpool(async (spool) => {
    const w = await spool.create();
    const chunks = [Buffer.from("Subject: hi\r\n"), Buffer.from("\r\n"), Buffer.from("hello\r\n.\r\n..x\r\n\0\xff")];
    for (const c of chunks) await w.write(c);
    assert.deepEqual(await spool.list(), [], "not visible before commit");
    await assert.rejects(spool.readEnvelope(w.id), (e: unknown) => e instanceof SpoolError && e.code === "ENOENT");
    const envelope = sampleEnvelope({ mailFrom: "nul\u0000in@example.org" });
    await w.commit(envelope);
    assert.deepEqual(await spool.list(), [w.id]);
    assert.deepEqual(await spool.readEnvelope(w.id), envelope);
    assert.deepEqual(await readAll(spool.readBody(w.id)), Buffer.concat(chunks));
    assert.deepEqual(spool.stats, { commits: 1, transactions: 1 });
    assert.equal(await count("spool_writer"), 0, "a small body wrote no row before the commit");
    const empty = await store(spool, []);
    assert.deepEqual(await readAll(spool.readBody(empty)), Buffer.alloc(0));
    await assert.rejects(w.write(Buffer.from("late")), (e: unknown) => e instanceof SpoolError && e.code === "ECLOSED");
  });
});

test("postgres spool: a 5 MiB body with every byte value streams in as rows before the commit, and back byte-identical", async () => {
  await withSpool(async (spool) => {
    const body = bigBody();
    const w = await spool.create();
    for (const c of oddChunks(body)) await w.write(c);
    const rowsBefore = await count("spool_chunk", w.id);
    assert.ok(rowsBefore >= 16, `the body is in the database before the commit (${rowsBefore} rows of 64 KiB)`);
    assert.equal(await count("spool_writer", w.id), 1, "the writer is registered while in flight");
    assert.deepEqual(await spool.list(), []);
    await w.commit(sampleEnvelope());
    assert.equal(await count("spool_writer"), 0, "the commit ends the registration");
    const pieces: number[] = [];
    const stream = spool.readBody(w.id);
    const back: Buffer[] = [];
    for await (const piece of stream) {
      pieces.push((piece as Buffer).length);
      back.push(piece as Buffer);
    }
    assert.ok(Buffer.concat(back).equals(body), "byte-identical");
    assert.ok(Math.max(...pieces) <= 16 * 1024, `read a slice of a row at a time (largest piece ${Math.max(...pieces)})`);
    await spool.remove(w.id);
    assert.equal(await count("spool_chunk"), 0, "removal takes the body rows");
  });
});

test("postgres spool: bodies on the edges of rows and of read slices come back exactly", async () => {
  await withSpool(async (spool) => {
    for (const size of [1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 32 * 1024, 3 * 16 * 1024 + 5]) {
      const body = Buffer.alloc(size);
      for (let i = 0; i < size; i++) body[i] = (i * 31 + size) & 0xff;
      const w = await spool.create();
      await w.write(body);
      await w.commit(sampleEnvelope());
      assert.ok((await readAll(spool.readBody(w.id))).equals(body), `${size} bytes`);
    }
  }, { chunkSize: 32 * 1024 });
});

test("postgres spool: an aborted writer leaves no rows; a commit after abort is refused", async () => {
  await withSpool(async (spool) => {
    const w = await spool.create();
    await w.write(Buffer.alloc(600 * 1024, 0x61));
    assert.ok((await count("spool_chunk", w.id)) > 0);
    await w.abort();
    await w.abort();
    assert.equal(await count("spool_chunk"), 0);
    assert.equal(await count("spool_writer"), 0);
    await assert.rejects(w.commit(sampleEnvelope()), SpoolError);
    assert.deepEqual(await spool.list(), []);
  });
});

test("postgres spool: 60 concurrent commits share a few transactions — counted by the database's transaction ids", async () => {
  await withSpool(async (spool) => {
    const writers = await Promise.all(Array.from({ length: 60 }, () => spool.create()));
    for (const [i, w] of writers.entries()) await w.write(Buffer.from(`Subject: ${i}\r\n\r\nbody ${i}\r\n`));
    const before = await nextXid();
    await Promise.all(writers.map((w, i) => w.commit(sampleEnvelope({ mailFrom: `s${i}@example.org` }))));
    const used = (await nextXid()) - before;
    assert.equal(spool.stats.commits, 60);
    assert.ok(spool.stats.transactions < 60 / 4, `group commit: ${spool.stats.transactions} transactions for 60 commits`);
    assert.equal(used, spool.stats.transactions, "the database assigned one transaction id per group commit");
    assert.equal((await spool.list()).length, 60);
    for (const [i, w] of writers.entries()) {
      assert.equal((await spool.readEnvelope(w.id)).mailFrom, `s${i}@example.org`);
      assert.equal((await readAll(spool.readBody(w.id))).toString(), `Subject: ${i}\r\n\r\nbody ${i}\r\n`);
    }
  });
});

test("postgres spool: scan goes in batches past the last id, holding no more than a batch; list is in id order", async () => {
  await withSpool(async (spool) => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await store(spool, [Buffer.from(`m${i}\r\n`)]));
    const batches: string[][] = [];
    for await (const batch of spool.scan(3)) batches.push(batch);
    assert.deepEqual(batches.map((b) => b.length), [3, 3, 1]);
    assert.deepEqual(batches.flat().sort(), [...ids].sort());
    assert.deepEqual(await spool.list(), [...ids].sort());
  });
});

test("postgres spool: remove takes the message; a second remove, its envelope and its body say ENOENT", async () => {
  await withSpool(async (spool) => {
    const keep = await store(spool, [Buffer.from("keep\r\n")]);
    const gone = await store(spool, [Buffer.from("gone\r\n")]);
    await spool.remove(gone);
    assert.deepEqual(await spool.list(), [keep]);
    const enoent = (e: unknown) => e instanceof SpoolError && e.code === "ENOENT";
    await assert.rejects(spool.remove(gone), enoent);
    await assert.rejects(spool.readEnvelope(gone), enoent);
    await assert.rejects(readAll(spool.readBody(gone)), enoent);
    assert.throws(() => spool.readBody("../etc/passwd"), (e: unknown) => e instanceof SpoolError && e.code === "EINVAL");
    assert.equal(await count("spool_chunk"), 1);
  });
});

test("postgres spool: a body row changed in the database is an ECORRUPT stream error, never mail", async () => {
  await withSpool(async (spool) => {
    const id = await store(spool, [Buffer.from("Subject: x\r\n\r\nintact\r\n")]);
    await pool.query("UPDATE spool_chunk SET bytes = $2 WHERE id = $1", [id, Buffer.from("Subject: x\r\n\r\nforged\r\n")]);
    await assert.rejects(readAll(spool.readBody(id)), (e: unknown) => e instanceof SpoolError && e.code === "ECORRUPT");
  });
});

test("postgres spool: the rows of an abandoned writer are swept; a live writer's (another node's) are not, and a swept writer cannot commit", async () => {
  await withSpool(async (spool, warnings) => {
    const other = new PostgresSpool({ pool, node: "other", heartbeatEvery: 0 });
    await other.open();
    try {
      const dead = await spool.create();
      await dead.write(Buffer.alloc(300 * 1024, 0x64));
      const live = await other.create();
      await live.write(Buffer.alloc(300 * 1024, 0x6c));
      // The dead writer's node stopped touching its row an hour ago (by the database's clock).
      await pool.query("UPDATE spool_writer SET touched_at = now() - interval '1 hour' WHERE id = $1", [dead.id]);
      assert.equal(await other.sweep(), 1, "one abandoned writer swept, by another node");
      assert.equal(await count("spool_chunk", dead.id), 0);
      assert.ok((await count("spool_chunk", live.id)) > 0, "the live writer's rows stay");
      await assert.rejects(dead.commit(sampleEnvelope()), (e: unknown) => e instanceof SpoolError && e.code === "ESTALE");
      await live.write(Buffer.from("tail\r\n"));
      await live.commit(sampleEnvelope());
      assert.deepEqual(await spool.list(), [live.id], "only the live writer's message, committed by the other node");
      const body = await readAll(spool.readBody(live.id));
      assert.equal(body.length, 300 * 1024 + 6);
      assert.equal(await count("spool_writer"), 0);
      assert.equal((await pool.query<{ node: string }>("SELECT node FROM spool_message WHERE id = $1", [live.id])).rows[0].node, "other");
    } finally {
      await other.close();
    }
  });
});

test("postgres spool: the sweep at open() removes what a killed writer left: rows with no live owner", async () => {
  await pool.query("INSERT INTO spool_writer (id, node, touched_at) VALUES ('01KBVZ0000DEADB00F', 'gone', now() - interval '2 hours')");
  await pool.query("INSERT INTO spool_chunk (id, seq, bytes) VALUES ('01KBVZ0000DEADB00F', 0, '\\x00')");
  await withSpool(async (_spool, warnings) => {
    assert.equal(await count("spool_chunk"), 0);
    assert.equal(await count("spool_writer"), 0);
    assert.match(warnings.join("\n"), /removed the body rows of 1 abandoned writer/);
  });
});
