import { test } from "node:test";
import assert from "node:assert/strict";
import { open as fsOpen, readdir } from "node:fs/promises";
import { join } from "node:path";
import { JournalSpool, type JournalSpoolOptions } from "../../src/spool/journal-spool.ts";
import { newQueueId } from "../../src/spool/queue-id.ts";
import { SpoolError } from "../../src/spool/spool.ts";
import { bigBody, readAll, sampleEnvelope, store, tempDir, withSpoolIn } from "./helpers.ts";

function withSpool(
  fn: (spool: JournalSpool, dir: string, warnings: string[]) => Promise<void>,
  options: JournalSpoolOptions = {},
): Promise<void> {
  return withSpoolIn((dir, onWarning) => new JournalSpool(dir, { ...options, onWarning }), fn);
}

function oddChunks(body: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  const sizes = [1, 7, 16383, 16384, 16385, 65536, 100_000, 3];
  for (let off = 0, i = 0; off < body.length; i++) {
    const n = Math.min(sizes[i % sizes.length], body.length - off);
    chunks.push(body.subarray(off, off + n));
    off += n;
  }
  return chunks;
}

test("journal: a message written in chunks comes back exactly: list, envelope, body; one journal sync", async () => {
  await withSpool(async (spool, dir) => {
    const chunks = [Buffer.from("Subject: hi\r\n"), Buffer.from("\r\n"), Buffer.from("hello\r\n.\r\n..x\r\n")];
    const envelope = sampleEnvelope();
    const id = await store(spool, chunks, envelope);
    assert.deepEqual(await spool.list(), [id]);
    assert.deepEqual(await spool.readEnvelope(id), envelope);
    assert.deepEqual(await readAll(spool.readBody(id)), Buffer.concat(chunks));
    assert.equal(spool.stats.commits, 1);
    assert.equal(spool.stats.journalSyncs, 1);
    assert.equal(spool.stats.fileSyncs, 0);
    assert.deepEqual(await readdir(join(dir, "large")), []);
  });
});

test("journal: a 5 MiB body with all 256 byte values, in odd-sized chunks, is byte-identical (spilled to large/), also after a restart", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const body = bigBody();
    const first = new JournalSpool(dir);
    await first.open();
    const id = await store(first, oddChunks(body));
    assert.deepEqual(await readdir(join(dir, "large")), [id]);
    assert.equal(first.stats.fileSyncs, 1);
    assert.ok((await readAll(first.readBody(id))).equals(body));
    await first.close();
    const second = new JournalSpool(dir);
    await second.open();
    assert.deepEqual(await second.list(), [id]);
    assert.ok((await readAll(second.readBody(id))).equals(body));
    await second.remove(id);
    assert.deepEqual(await readdir(join(dir, "large")), []);
    await second.close();
  } finally {
    await cleanup();
  }
});

test("journal: bodies around the inline limit, and past the inline budget, round-trip", async () => {
  await withSpool(
    async (spool, dir) => {
      const sizes = [0, 1, 999, 1000, 1001, 2500];
      const bodies = sizes.map((n, i) => Buffer.alloc(n, 0x41 + i));
      const ids: string[] = [];
      for (const b of bodies) ids.push(await store(spool, b.length > 0 ? [b.subarray(0, b.length >> 1), b.subarray(b.length >> 1)] : []));
      for (let i = 0; i < ids.length; i++) assert.ok((await readAll(spool.readBody(ids[i]))).equals(bodies[i]), `size ${sizes[i]}`);
      assert.equal((await readdir(join(dir, "large"))).length, 2);
      // budget: 3 open writers of 800 bytes each, budget 2000 -> the third spills
      const ws = await Promise.all([0, 1, 2].map(() => spool.create()));
      for (const w of ws) await w.write(Buffer.alloc(800, 0x61));
      await Promise.all(ws.map((w) => w.commit(sampleEnvelope())));
      assert.equal((await readdir(join(dir, "large"))).length, 3);
      for (const w of ws) assert.ok((await readAll(spool.readBody(w.id))).equals(Buffer.alloc(800, 0x61)));
    },
    { inlineLimit: 1000, inlineBudget: 2000 },
  );
});

test("journal: an empty body and many tiny writes both round-trip", async () => {
  await withSpool(async (spool) => {
    const empty = await store(spool, []);
    const tiny = Array.from({ length: 5000 }, (_, i) => Buffer.from(`${i}\r\n`));
    const many = await store(spool, tiny);
    assert.deepEqual(await spool.list(), [empty, many]);
    assert.equal((await readAll(spool.readBody(empty))).length, 0);
    assert.ok((await readAll(spool.readBody(many))).equals(Buffer.concat(tiny)));
  });
});

test("journal: committed messages survive a restart and list oldest first; removed ones stay removed", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const first = new JournalSpool(dir);
    await first.open();
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await store(first, [Buffer.from(`body ${i}\r\n`)], sampleEnvelope({ receivedAt: i })));
    await first.remove(ids[5]);
    await first.close();
    const second = new JournalSpool(dir);
    await second.open();
    assert.deepEqual(await second.list(), ids.slice(0, 5));
    for (let i = 0; i < 5; i++) {
      assert.equal((await second.readEnvelope(ids[i])).receivedAt, i);
      assert.equal((await readAll(second.readBody(ids[i]))).toString(), `body ${i}\r\n`);
    }
    await second.close();
  } finally {
    await cleanup();
  }
});

test("journal: abort and an uncommitted writer leave nothing listed; abort is idempotent", async () => {
  await withSpool(async (spool, dir) => {
    const aborted = await spool.create();
    await aborted.write(Buffer.alloc(40_000, 0x61));
    await aborted.abort();
    await aborted.abort();
    await assert.rejects(aborted.write(Buffer.from("x")), SpoolError);
    await assert.rejects(aborted.commit(sampleEnvelope()), SpoolError);
    const spilled = await spool.create();
    await spilled.write(Buffer.alloc(300_000, 0x62));
    assert.deepEqual(await readdir(join(dir, "large")), [spilled.id]);
    await spilled.abort();
    assert.deepEqual(await readdir(join(dir, "large")), []);
    const pending = await spool.create();
    await pending.write(Buffer.from("half a message"));
    assert.deepEqual(await spool.list(), []);
    await pending.abort();
    const kept = await store(spool, [Buffer.from("kept")]);
    const w = await spool.create();
    await w.write(Buffer.from("y"));
    const c = w.commit(sampleEnvelope());
    await w.abort();
    await c;
    assert.deepEqual(await spool.list(), [kept, w.id]);
  });
});

test("journal: a body damaged on disk is an error when read, not silently wrong bytes", async () => {
  await withSpool(async (spool, dir) => {
    const id = await store(spool, [Buffer.from("an important body")]);
    const seg = (await readdir(join(dir, "segments"))).sort()[0];
    const fh = await fsOpen(join(dir, "segments", seg), "r+");
    const size = (await fh.stat()).size;
    await fh.write(Buffer.from("I"), 0, 1, size - 3);
    await fh.close();
    await assert.rejects(readAll(spool.readBody(id)), (e: unknown) => e instanceof SpoolError && e.code === "ECORRUPT");
  });
});

test("journal: ids from outside are validated; unknown ids are ENOENT", async () => {
  await withSpool(async (spool) => {
    for (const bad of ["../x", "", "a/b", "../../etc/passwd", "..", "queue"]) {
      await assert.rejects(spool.readEnvelope(bad), (e: unknown) => e instanceof SpoolError && e.code === "EINVAL");
      await assert.rejects(spool.remove(bad), (e: unknown) => e instanceof SpoolError && e.code === "EINVAL");
      assert.throws(() => spool.readBody(bad), (e: unknown) => e instanceof SpoolError && e.code === "EINVAL");
    }
    const missing = newQueueId();
    await assert.rejects(spool.readEnvelope(missing), (e: unknown) => e instanceof SpoolError && e.code === "ENOENT");
    await assert.rejects(readAll(spool.readBody(missing)), (e: unknown) => e instanceof SpoolError && e.code === "ENOENT");
  });
});

test("journal: remove deletes a message; removing it again is ENOENT", async () => {
  await withSpool(async (spool) => {
    const a = await store(spool, [Buffer.from("a")]);
    const b = await store(spool, [Buffer.from("b")]);
    await spool.remove(a);
    assert.deepEqual(await spool.list(), [b]);
    await assert.rejects(spool.remove(a), (e: unknown) => e instanceof SpoolError && e.code === "ENOENT");
    await assert.rejects(spool.readEnvelope(a), (e: unknown) => e instanceof SpoolError && e.code === "ENOENT");
  });
});

test("journal: 200 concurrent commits all succeed with distinct ids, sharing far fewer fdatasyncs", async () => {
  await withSpool(async (spool) => {
    const n = 200;
    const ids = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const w = await spool.create();
        await w.write(Buffer.from(`message ${i}\r\n`.repeat(50)));
        await w.commit(sampleEnvelope({ receivedAt: i }));
        return { id: w.id, i };
      }),
    );
    assert.equal(new Set(ids.map((x) => x.id)).size, n);
    assert.deepEqual(await spool.list(), ids.map((x) => x.id).sort());
    for (const { id, i } of ids) {
      assert.equal((await spool.readEnvelope(id)).receivedAt, i);
      assert.equal((await readAll(spool.readBody(id))).toString(), `message ${i}\r\n`.repeat(50));
    }
    const { commits, journalSyncs, fileSyncs } = spool.stats;
    assert.equal(commits, n);
    assert.equal(fileSyncs, 0);
    assert.ok(journalSyncs >= 1 && journalSyncs < n / 10, `${journalSyncs} fdatasyncs for ${n} commits`);
  });
});

test("journal: segments roll, and a segment whose messages are all removed is deleted (after the older ones it holds tombstones for)", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const spool = new JournalSpool(dir, { segmentSize: 4096 });
    await spool.open();
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push(await store(spool, [Buffer.alloc(500, 0x30 + (i % 10))]));
    const segs = () => readdir(join(dir, "segments"));
    const before = (await segs()).length;
    assert.ok(before >= 5, `${before} segments`);
    // remove all but the first message: the first segment stays, so later segments
    // holding tombstones only for themselves go, but nothing that holds one for segment 1
    for (const id of ids.slice(1).reverse()) await spool.remove(id);
    await spool.remove(ids[0]);
    // let cleanup run
    for (let i = 0; i < 5; i++) await store(spool, [Buffer.alloc(10)]).then((id) => spool.remove(id));
    await spool.close();
    const after = (await segs()).length;
    assert.ok(after <= 3, `${after} segments left of ${before}`);
    const again = new JournalSpool(dir, { segmentSize: 4096 });
    await again.open();
    assert.deepEqual(await again.list(), []);
    await again.close();
  } finally {
    await cleanup();
  }
});

test("journal: close() waits for commits in flight and discards open writers", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const spool = new JournalSpool(dir);
    await spool.open();
    const w = await spool.create();
    await w.write(Buffer.from("late"));
    const committed = w.commit(sampleEnvelope());
    const open = await spool.create();
    await open.write(Buffer.alloc(300_000));
    await spool.close();
    await committed;
    await assert.rejects(spool.create(), SpoolError);
    assert.deepEqual(await readdir(join(dir, "large")), [], "an open writer is discarded at close");
    await assert.rejects(open.write(Buffer.from("x")), SpoolError);
    const again = new JournalSpool(dir);
    await again.open();
    assert.deepEqual(await again.list(), [w.id]);
    await again.close();
  } finally {
    await cleanup();
  }
});

test("journal: fsync: false (benchmarks only) stores the same bytes without syncing", async () => {
  await withSpool(
    async (spool) => {
      const id = await store(spool, [Buffer.from("fast")]);
      assert.equal((await readAll(spool.readBody(id))).toString(), "fast");
      assert.equal(spool.stats.journalSyncs, 0);
      assert.equal(spool.stats.dirSyncs, 0);
    },
    { fsync: false },
  );
});

test("journal: operations before open() are refused", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const spool = new JournalSpool(dir);
    await assert.rejects(spool.create(), (e: unknown) => e instanceof SpoolError && e.code === "ECLOSED");
    await assert.rejects(spool.list(), SpoolError);
  } finally {
    await cleanup();
  }
});
