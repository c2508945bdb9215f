import { test } from "node:test";
import assert from "node:assert/strict";
import { open as fsOpen, readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileSpool } from "../../src/spool/file-spool.ts";
import { newQueueId } from "../../src/spool/queue-id.ts";
import { SpoolError } from "../../src/spool/spool.ts";
import { bigBody, readAll, sampleEnvelope, store, tempDir, withSpoolIn } from "./helpers.ts";

function withSpool(
  fn: (spool: FileSpool, dir: string, warnings: string[]) => Promise<void>,
  options: { fsync?: boolean } = {},
): Promise<void> {
  return withSpoolIn((dir, onWarning) => new FileSpool(dir, { ...options, onWarning }), fn);
}

test("a message written in chunks comes back exactly: list, envelope, body", async () => {
  await withSpool(async (spool) => {
    const chunks = [Buffer.from("Subject: hi\r\n"), Buffer.from("\r\n"), Buffer.from("hello\r\n.\r\n..x\r\n")];
    const envelope = sampleEnvelope();
    const id = await store(spool, chunks, envelope);
    assert.deepEqual(await spool.list(), [id]);
    assert.deepEqual(await spool.readEnvelope(id), envelope);
    assert.deepEqual(await readAll(spool.readBody(id)), Buffer.concat(chunks));
    assert.equal(spool.stats.commits, 1);
    assert.equal(spool.stats.fileSyncs, 1);
    assert.equal(spool.stats.dirSyncs, 1);
  });
});

test("a 5 MiB body with all 256 byte values, in odd-sized chunks, is byte-identical", async () => {
  await withSpool(async (spool) => {
    const body = bigBody();
    const chunks: Buffer[] = [];
    const sizes = [1, 7, 16383, 16384, 16385, 65536, 100_000, 3];
    for (let off = 0, i = 0; off < body.length; i++) {
      const n = Math.min(sizes[i % sizes.length], body.length - off);
      chunks.push(body.subarray(off, off + n));
      off += n;
    }
    const id = await store(spool, chunks);
    const back = await readAll(spool.readBody(id));
    assert.equal(back.length, body.length);
    assert.ok(back.equals(body));
  });
});

test("an empty body and many tiny writes both round-trip", async () => {
  await withSpool(async (spool) => {
    const empty = await store(spool, []);
    const tiny = Array.from({ length: 5000 }, (_, i) => Buffer.from(`${i}\r\n`));
    const many = await store(spool, tiny);
    assert.deepEqual(await spool.list(), [empty, many]);
    assert.equal((await readAll(spool.readBody(empty))).length, 0);
    assert.ok((await readAll(spool.readBody(many))).equals(Buffer.concat(tiny)));
  });
});

test("committed messages survive a restart and list oldest first", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const first = new FileSpool(dir);
    await first.open();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await store(first, [Buffer.from(`body ${i}\r\n`)], sampleEnvelope({ receivedAt: i })));
    await first.close();
    const second = new FileSpool(dir);
    await second.open();
    assert.deepEqual(await second.list(), ids);
    for (let i = 0; i < 5; i++) {
      assert.equal((await second.readEnvelope(ids[i])).receivedAt, i);
      assert.equal((await readAll(second.readBody(ids[i]))).toString(), `body ${i}\r\n`);
    }
    await second.close();
  } finally {
    await cleanup();
  }
});

test("abort and an uncommitted writer leave nothing listed; abort is idempotent", async () => {
  await withSpool(async (spool, dir) => {
    const aborted = await spool.create();
    await aborted.write(Buffer.alloc(40_000, 0x61));
    await aborted.abort();
    await aborted.abort();
    await assert.rejects(aborted.write(Buffer.from("x")), SpoolError);
    await assert.rejects(aborted.commit(sampleEnvelope()), SpoolError);
    const pending = await spool.create();
    await pending.write(Buffer.from("half a message"));
    assert.deepEqual(await spool.list(), []);
    assert.deepEqual(await readdir(join(dir, "tmp")), [pending.id]);
    await pending.abort();
    assert.deepEqual(await readdir(join(dir, "tmp")), []);
    // abort after commit keeps the message
    const kept = await store(spool, [Buffer.from("kept")]);
    const w = await spool.create();
    await w.write(Buffer.from("y"));
    const c = w.commit(sampleEnvelope());
    await w.abort();
    await c;
    assert.deepEqual(await spool.list(), [kept, w.id]);
  });
});

test("open() removes partial messages left in tmp/ by a previous run", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const first = new FileSpool(dir);
    await first.open();
    const done = await store(first, [Buffer.from("whole")]);
    const partial = await first.create();
    await partial.write(Buffer.alloc(50_000, 0x62));
    // the process "dies" here: no abort, no close
    await writeFile(join(dir, "tmp", "stray-file"), "junk");
    const warnings: string[] = [];
    const second = new FileSpool(dir, { onWarning: (m) => warnings.push(m) });
    await second.open();
    assert.deepEqual(await readdir(join(dir, "tmp")), []);
    assert.deepEqual(await second.list(), [done]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /removed 2 partial/);
    await second.close();
    await first.close();
  } finally {
    await cleanup();
  }
});

test("files in queue/ that are not whole messages are quarantined, never listed", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const first = new FileSpool(dir);
    await first.open();
    const good = await store(first, [Buffer.from("good body")]);
    const truncated = await store(first, [Buffer.from("truncated body")]);
    const badEnvelope = await store(first, [Buffer.from("bad envelope")]);
    const emptyFile = newQueueId();
    await first.close();
    const q = join(dir, "queue");
    await truncate(join(q, truncated), (await stat(join(q, truncated))).size - 1);
    // flip one byte inside the envelope JSON: the envelope checksum catches it
    const fh = await fsOpen(join(q, badEnvelope), "r+");
    const size = (await fh.stat()).size;
    await fh.write(Buffer.from("X"), 0, 1, size - 32 - 5);
    await fh.close();
    await writeFile(join(q, emptyFile), "");
    await writeFile(join(q, "not-a-queue-id"), "whatever");

    const warnings: string[] = [];
    const second = new FileSpool(dir, { onWarning: (m) => warnings.push(m) });
    await second.open();
    assert.deepEqual(await second.list(), [good]);
    assert.deepEqual(await readdir(q), [good]);
    const quarantined = await readdir(join(dir, "corrupt"));
    assert.equal(quarantined.length, 4);
    for (const name of [truncated, badEnvelope, emptyFile, "not-a-queue-id"]) {
      assert.ok(quarantined.some((f) => f.startsWith(name + ".")), name);
      assert.ok(warnings.some((w) => w.includes(name)), name);
    }
    assert.equal((await readAll(second.readBody(good))).toString(), "good body");
    await second.close();
  } finally {
    await cleanup();
  }
});

test("a body damaged on disk is an error when read, not silently wrong bytes", async () => {
  await withSpool(async (spool, dir) => {
    const id = await store(spool, [Buffer.from("an important body")]);
    const fh = await fsOpen(join(dir, "queue", id), "r+");
    await fh.write(Buffer.from("I"), 0, 1, 3);
    await fh.close();
    await assert.rejects(readAll(spool.readBody(id)), (e: unknown) => e instanceof SpoolError && e.code === "ECORRUPT");
  });
});

test("ids from outside are validated: no path traversal", async () => {
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

test("remove deletes a message; removing it again is ENOENT", async () => {
  await withSpool(async (spool, dir) => {
    const a = await store(spool, [Buffer.from("a")]);
    const b = await store(spool, [Buffer.from("b")]);
    await spool.remove(a);
    assert.deepEqual(await spool.list(), [b]);
    assert.deepEqual(await readdir(join(dir, "queue")), [b]);
    await assert.rejects(spool.remove(a), (e: unknown) => e instanceof SpoolError && e.code === "ENOENT");
  });
});

test("200 concurrent commits all succeed with distinct ids, sharing directory fsyncs", async () => {
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
    for (const { id, i } of ids.slice(0, 20)) {
      assert.equal((await spool.readEnvelope(id)).receivedAt, i);
      assert.equal((await readAll(spool.readBody(id))).toString(), `message ${i}\r\n`.repeat(50));
    }
    const { commits, fileSyncs, dirSyncs } = spool.stats;
    assert.equal(commits, n);
    assert.equal(fileSyncs, n);
    assert.ok(dirSyncs >= 1 && dirSyncs < n / 2, `${dirSyncs} directory fsyncs for ${n} commits`);
  });
});

test("close() waits for commits in flight", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const spool = new FileSpool(dir);
    await spool.open();
    const w = await spool.create();
    await w.write(Buffer.from("late"));
    const committed = w.commit(sampleEnvelope());
    const open = await spool.create();
    await spool.close();
    await committed;
    await assert.rejects(spool.create(), SpoolError);
    assert.deepEqual(await readdir(join(dir, "tmp")), [], "an open writer is discarded at close");
    await assert.rejects(open.write(Buffer.from("x")), SpoolError);
    const again = new FileSpool(dir);
    await again.open();
    assert.deepEqual(await again.list(), [w.id]);
    await again.close();
  } finally {
    await cleanup();
  }
});

test("fsync: false (benchmarks only) stores the same bytes without syncing", async () => {
  await withSpool(
    async (spool, dir) => {
      const id = await store(spool, [Buffer.from("fast")]);
      assert.equal((await readAll(spool.readBody(id))).toString(), "fast");
      assert.deepEqual(spool.stats, { commits: 1, fileSyncs: 0, dirSyncs: 0 });
      const raw = await readFile(join(dir, "queue", id));
      assert.equal(raw.subarray(0, 4).toString(), "fast");
    },
    { fsync: false },
  );
});

test("operations before open() are refused", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const spool = new FileSpool(dir);
    await assert.rejects(spool.create(), (e: unknown) => e instanceof SpoolError && e.code === "ECLOSED");
    await assert.rejects(spool.list(), SpoolError);
  } finally {
    await cleanup();
  }
});
