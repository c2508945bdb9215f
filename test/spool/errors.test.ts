import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { FileSpool } from "../../src/spool/file-spool.ts";
import { nodeFs, type SpoolFileHandle, type SpoolFs } from "../../src/spool/spool-file.ts";
import { SpoolError } from "../../src/spool/spool.ts";
import { readAll, sampleEnvelope, tempDir } from "./helpers.ts";

type Op = "open" | "writev" | "sync" | "rename" | "dirsync";

/**
 * The real filesystem, except that the operations named in `faults` fail
 * with the given errno code while the fault is set.
 */
function faultyFs(queueDir: () => string) {
  const faults = new Map<Op, string>();
  /** File path -> errno code: that file's fsync fails. */
  const syncFaults = new Map<string, string>();
  const fail = (op: Op, path?: string): void => {
    const code = (path !== undefined ? syncFaults.get(path) : undefined) ?? faults.get(op);
    if (code !== undefined) throw Object.assign(new Error(`${code}: injected ${op} failure`), { code });
  };
  const wrap = (fh: SpoolFileHandle, path: string): SpoolFileHandle => ({
    async writev(buffers, position) {
      fail("writev");
      return fh.writev(buffers, position);
    },
    read: (buffer, offset, length, position) => fh.read(buffer, offset, length, position),
    stat: () => fh.stat(),
    async sync() {
      fail(path === queueDir() ? "dirsync" : "sync", path);
      return fh.sync();
    },
    close: () => fh.close(),
  });
  const fs: SpoolFs = {
    ...nodeFs,
    async open(path, flags, mode) {
      if (flags !== "r") fail("open");
      return wrap(await nodeFs.open(path, flags, mode), path);
    },
    async rename(from, to) {
      fail("rename");
      return nodeFs.rename(from, to);
    },
  };
  return { fs, faults, syncFaults };
}

async function setup() {
  const { dir, cleanup } = await tempDir();
  const { fs, faults, syncFaults } = faultyFs(() => join(dir, "queue"));
  const spool = new FileSpool(dir, { fs });
  await spool.open();
  return {
    dir,
    spool,
    faults,
    syncFaults,
    async done() {
      await spool.close();
      await cleanup();
    },
  };
}

function isSpoolError(code: string) {
  return (e: unknown) => e instanceof SpoolError && e.code === code;
}

/** The spool still stores and returns a message after a failure. */
async function stillWorks(spool: FileSpool): Promise<string> {
  const w = await spool.create();
  await w.write(Buffer.from("after the failure\r\n"));
  await w.commit(sampleEnvelope());
  assert.equal((await readAll(spool.readBody(w.id))).toString(), "after the failure\r\n");
  return w.id;
}

for (const [op, code] of [
  ["writev", "ENOSPC"],
  ["sync", "EIO"],
  ["rename", "EXDEV"],
] as const) {
  test(`a ${op} failure (${code}) at commit rejects with SpoolError, cleans up, and the spool goes on`, async () => {
    const t = await setup();
    try {
      const w = await t.spool.create();
      await w.write(Buffer.from("small body, gathered until commit\r\n"));
      t.faults.set(op, code);
      await assert.rejects(w.commit(sampleEnvelope()), isSpoolError(code));
      t.faults.clear();
      assert.deepEqual(await t.spool.list(), []);
      assert.deepEqual(await readdir(join(t.dir, "tmp")), []);
      await assert.rejects(w.commit(sampleEnvelope()), isSpoolError(code));
      await w.abort();
      const id = await stillWorks(t.spool);
      assert.deepEqual(await t.spool.list(), [id]);
    } finally {
      await t.done();
    }
  });
}

test("a write failure while streaming a large body rejects write() and then commit()", async () => {
  const t = await setup();
  try {
    const w = await t.spool.create();
    await w.write(Buffer.alloc(100_000, 0x41));
    t.faults.set("writev", "ENOSPC");
    await assert.rejects(w.write(Buffer.alloc(100_000, 0x42)), isSpoolError("ENOSPC"));
    t.faults.clear();
    await assert.rejects(w.write(Buffer.from("more")), isSpoolError("ENOSPC"));
    await assert.rejects(w.commit(sampleEnvelope()), isSpoolError("ENOSPC"));
    await w.abort();
    assert.deepEqual(await readdir(join(t.dir, "tmp")), []);
    await stillWorks(t.spool);
  } finally {
    await t.done();
  }
});

test("a failed directory fsync rejects the commit and takes the message back", async () => {
  const t = await setup();
  try {
    const w = await t.spool.create();
    await w.write(Buffer.from("body"));
    t.faults.set("dirsync", "EIO");
    await assert.rejects(w.commit(sampleEnvelope()), isSpoolError("EIO"));
    t.faults.clear();
    assert.deepEqual(await t.spool.list(), []);
    assert.deepEqual(await readdir(join(t.dir, "tmp")), []);
    const id = await stillWorks(t.spool);
    assert.deepEqual(await t.spool.list(), [id]);
  } finally {
    await t.done();
  }
});

test("a failure to create the temporary file rejects create() with SpoolError", async () => {
  const t = await setup();
  try {
    t.faults.set("open", "EMFILE");
    await assert.rejects(t.spool.create(), isSpoolError("EMFILE"));
    t.faults.clear();
    await stillWorks(t.spool);
  } finally {
    await t.done();
  }
});

test("one failing commit among concurrent ones does not disturb the others", async () => {
  const t = await setup();
  try {
    const writers = await Promise.all(Array.from({ length: 20 }, () => t.spool.create()));
    await Promise.all(writers.map((w) => w.write(Buffer.from(`body of ${w.id}`))));
    const bad = writers[7];
    t.syncFaults.set(join(t.dir, "tmp", bad.id), "EIO");
    const results = await Promise.allSettled(writers.map((w) => w.commit(sampleEnvelope())));
    results.forEach((r, i) => assert.equal(r.status, i === 7 ? "rejected" : "fulfilled"));
    await assert.rejects(results[7].status === "rejected" ? Promise.reject(results[7].reason) : Promise.resolve(), isSpoolError("EIO"));
    const listed = await t.spool.list();
    assert.deepEqual(listed, writers.filter((w) => w !== bad).map((w) => w.id).sort());
  } finally {
    await t.done();
  }
});
