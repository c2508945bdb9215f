import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { JournalSpool } from "../../src/spool/journal-spool.ts";
import { nodeJournalFs, type JournalFileHandle, type JournalFs } from "../../src/spool/journal-record.ts";
import { SpoolError } from "../../src/spool/spool.ts";
import { readAll, sampleEnvelope, tempDir } from "./helpers.ts";

type Op = "create" | "writev" | "datasync" | "sync" | "truncate" | "dirsync";
type Where = "segment" | "large" | "any";

/** The real filesystem, except that the operations named in `faults` fail with the given errno code. */
function faultyFs() {
  const faults = new Map<Op, { code: string; where: Where }>();
  const fail = (op: Op, path: string): void => {
    const f = faults.get(op);
    if (f === undefined) return;
    if (f.where === "segment" && !path.includes("/segments/")) return;
    if (f.where === "large" && !path.includes("/large/")) return;
    throw Object.assign(new Error(`${f.code}: injected ${op} failure`), { code: f.code });
  };
  const wrap = (fh: JournalFileHandle, path: string, isDir: boolean): JournalFileHandle => ({
    async writev(buffers, position) {
      fail("writev", path);
      return fh.writev(buffers, position);
    },
    read: (buffer, offset, length, position) => fh.read(buffer, offset, length, position),
    stat: () => fh.stat(),
    async sync() {
      fail(isDir ? "dirsync" : "sync", path);
      return fh.sync();
    },
    async datasync() {
      fail("datasync", path);
      return fh.datasync();
    },
    async truncate(len) {
      fail("truncate", path);
      return fh.truncate(len);
    },
    close: () => fh.close(),
  });
  const fs: JournalFs = {
    ...nodeJournalFs,
    async open(path, flags, mode) {
      if (flags === "wx") fail("create", path);
      const isDir = flags === "r" && !/\/(segments|large)\/[^/]+$/.test(path);
      return wrap(await nodeJournalFs.open(path, flags, mode), path, isDir);
    },
  };
  const set = (op: Op, code: string, where: Where = "any") => faults.set(op, { code, where });
  return { fs, faults, set };
}

async function setup() {
  const { dir, cleanup } = await tempDir();
  const f = faultyFs();
  const spool = new JournalSpool(dir, { fs: f.fs });
  await spool.open();
  return {
    dir,
    spool,
    f,
    async reopen(): Promise<JournalSpool> {
      await spool.close();
      const again = new JournalSpool(dir);
      await again.open();
      return again;
    },
    async done() {
      await spool.close();
      await cleanup();
    },
  };
}

function isSpoolError(code: string) {
  return (e: unknown) => e instanceof SpoolError && e.code === code;
}

async function stillWorks(spool: JournalSpool, body = "after the failure\r\n"): Promise<string> {
  const w = await spool.create();
  await w.write(Buffer.from(body));
  await w.commit(sampleEnvelope());
  assert.equal((await readAll(spool.readBody(w.id))).toString(), body);
  return w.id;
}

for (const [op, code, truncateFails] of [
  ["writev", "ENOSPC", false],
  ["datasync", "EIO", false],
  ["datasync", "EIO", true],
] as const) {
  test(`journal: a ${op} failure (${code}) rejects the whole batch, nothing of it is listed or comes back after restart${truncateFails ? " (even when the truncate fails too)" : ""}`, async () => {
    const t = await setup();
    try {
      const before = await stillWorks(t.spool, "before\r\n");
      const writers = await Promise.all(Array.from({ length: 10 }, () => t.spool.create()));
      for (const w of writers) await w.write(Buffer.from(`body of ${w.id}\r\n`));
      t.f.set(op, code, "segment");
      if (truncateFails) t.f.set("truncate", "EIO");
      const results = await Promise.allSettled(writers.map((w) => w.commit(sampleEnvelope())));
      t.f.faults.clear();
      for (const r of results) {
        assert.equal(r.status, "rejected");
        assert.ok(isSpoolError(code)((r as PromiseRejectedResult).reason));
      }
      assert.deepEqual(await t.spool.list(), [before]);
      await assert.rejects(writers[0].commit(sampleEnvelope()), isSpoolError(code));
      await writers[0].abort();
      const after = await stillWorks(t.spool);
      assert.deepEqual(await t.spool.list(), [before, after]);
      const again = await t.reopen();
      try {
        assert.deepEqual(await again.list(), [before, after]);
        assert.equal((await readAll(again.readBody(after))).toString(), "after the failure\r\n");
      } finally {
        await again.close();
      }
    } finally {
      await t.done();
    }
  });
}

test("journal: a write failure while streaming a large body rejects write() and then commit(), and leaves no file", async () => {
  const t = await setup();
  try {
    const w = await t.spool.create();
    await w.write(Buffer.alloc(300_000, 0x41));
    t.f.set("writev", "ENOSPC", "large");
    await assert.rejects(w.write(Buffer.alloc(100_000, 0x42)), isSpoolError("ENOSPC"));
    t.f.faults.clear();
    await assert.rejects(w.write(Buffer.from("more")), isSpoolError("ENOSPC"));
    await assert.rejects(w.commit(sampleEnvelope()), isSpoolError("ENOSPC"));
    await w.abort();
    assert.deepEqual(await readdir(join(t.dir, "large")), []);
    await stillWorks(t.spool);
  } finally {
    await t.done();
  }
});

test("journal: a failed fsync of a large body file rejects that commit only", async () => {
  const t = await setup();
  try {
    const big = await t.spool.create();
    await big.write(Buffer.alloc(400_000, 0x43));
    const small = await t.spool.create();
    await small.write(Buffer.from("small"));
    t.f.set("sync", "EIO", "large");
    const [rb, rs] = await Promise.allSettled([big.commit(sampleEnvelope()), small.commit(sampleEnvelope())]);
    t.f.faults.clear();
    assert.equal(rb.status, "rejected");
    assert.ok(isSpoolError("EIO")((rb as PromiseRejectedResult).reason));
    assert.equal(rs.status, "fulfilled");
    assert.deepEqual(await t.spool.list(), [small.id]);
    assert.deepEqual(await readdir(join(t.dir, "large")), []);
  } finally {
    await t.done();
  }
});

test("journal: a failed directory fsync for a large body rejects its commit", async () => {
  const t = await setup();
  try {
    t.f.set("dirsync", "EIO");
    const w = await t.spool.create();
    await w.write(Buffer.alloc(300_000, 0x44));
    await assert.rejects(w.commit(sampleEnvelope()), isSpoolError("EIO"));
    t.f.faults.clear();
    assert.deepEqual(await t.spool.list(), []);
    assert.deepEqual(await readdir(join(t.dir, "large")), []);
    await stillWorks(t.spool);
  } finally {
    await t.done();
  }
});

test("journal: when no new segment can be created, commits are rejected until it can", async () => {
  const { dir, cleanup } = await tempDir();
  const f = faultyFs();
  const spool = new JournalSpool(dir, { fs: f.fs, segmentSize: 2000 });
  try {
    await spool.open();
    f.set("create", "ENOSPC", "segment");
    let failures = 0;
    const ok: string[] = [];
    for (let i = 0; i < 12; i++) {
      try {
        ok.push(await stillWorks(spool, `message ${i} `.repeat(30)));
      } catch (err) {
        assert.ok(isSpoolError("ENOSPC")(err));
        failures++;
      }
    }
    assert.ok(failures >= 1, "the segment never rolled");
    f.faults.clear();
    ok.push(await stillWorks(spool));
    assert.deepEqual(await spool.list(), ok);
  } finally {
    await spool.close();
    await cleanup();
  }
});

test("journal: a failed tombstone write rejects remove() and keeps the message", async () => {
  const t = await setup();
  try {
    const id = await stillWorks(t.spool);
    t.f.set("writev", "EIO", "segment");
    await assert.rejects(t.spool.remove(id), isSpoolError("EIO"));
    t.f.faults.clear();
    assert.deepEqual(await t.spool.list(), [id]);
    await t.spool.remove(id);
    assert.deepEqual(await t.spool.list(), []);
  } finally {
    await t.done();
  }
});
