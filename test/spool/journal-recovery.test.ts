import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, open as fsOpen, readdir, readFile, stat, truncate, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { JournalSpool } from "../../src/spool/journal-spool.ts";
import { decodeHeader, HEADER_SIZE, recordSize, segmentName } from "../../src/spool/journal-record.ts";
import { newQueueId } from "../../src/spool/queue-id.ts";
import { readAll, sampleEnvelope, tempDir } from "./helpers.ts";

/** Deterministic pseudo-random numbers for the test. */
function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x / 2 ** 32;
  };
}

function bodyOf(i: number): Buffer {
  return Buffer.from(`message ${i} `.repeat(1 + ((i * 37) % 300)) + "\r\n");
}

/** A spool with one segment of `n` messages, committed in several batches; returns ids and record ends. */
async function makeSegment(dir: string, n: number): Promise<{ ids: string[]; ends: number[]; segment: string }> {
  const spool = new JournalSpool(dir);
  await spool.open();
  const ids: string[] = [];
  for (let i = 0; i < n; i += 5) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(5, n - i) }, async (_, k) => {
        const w = await spool.create();
        await w.write(bodyOf(i + k));
        return w;
      }),
    );
    await Promise.all(batch.map((w, k) => w.commit(sampleEnvelope({ receivedAt: i + k }))));
    ids.push(...batch.map((w) => w.id));
  }
  await spool.close();
  const segment = join(dir, "segments", segmentName(1));
  const data = await readFile(segment);
  const ends: number[] = [];
  for (let off = 0; off < data.length; ) {
    const h = decodeHeader(data.subarray(off, off + HEADER_SIZE));
    assert.ok(h !== null);
    off += recordSize(h);
    ends.push(off);
  }
  assert.equal(ends.length, n);
  return { ids, ends, segment };
}

async function checkRecovered(dir: string, ids: string[], ends: number[], cut: number, label: string): Promise<void> {
  const warnings: string[] = [];
  const spool = new JournalSpool(dir, { onWarning: (m) => warnings.push(m) });
  await spool.open();
  try {
    // exactly the records that lie wholly before the cut survive
    const whole = ends.filter((e) => e <= cut).length;
    assert.deepEqual(await spool.list(), ids.slice(0, whole).sort(), label);
    for (let i = 0; i < whole; i++) {
      assert.equal((await spool.readEnvelope(ids[i])).receivedAt, i, label);
      assert.ok((await readAll(spool.readBody(ids[i]))).equals(bodyOf(i)), label);
    }
    const boundary = whole === 0 ? 0 : ends[whole - 1];
    const size = await stat(join(dir, "segments", segmentName(1))).then((s) => s.size, () => null);
    // a segment left with no message is deleted outright
    assert.equal(size, whole === 0 ? null : boundary, `${label}: torn tail cut off`);
    assert.equal(warnings.length, boundary < cut ? 1 : 0, `${label}: ${warnings.join("; ")}`);
    // and the spool goes on: a new message lands in a new segment and survives
    const w = await spool.create();
    await w.write(Buffer.from("after recovery"));
    await w.commit(sampleEnvelope());
    assert.ok((await spool.list()).includes(w.id));
  } finally {
    await spool.close();
  }
}

test("journal recovery: a segment cut at random offsets keeps exactly the whole records before the cut", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const source = join(dir, "source");
    const { ids, ends, segment } = await makeSegment(source, 23);
    const random = rng(42);
    const size = ends[ends.length - 1];
    const cuts = [0, 1, HEADER_SIZE - 1, HEADER_SIZE, ends[0] - 1, ends[0], ends[0] + 1, size - 1, size];
    for (let i = 0; i < 25; i++) cuts.push(Math.floor(random() * size));
    for (const [i, cut] of cuts.entries()) {
      const work = join(dir, `cut-${i}`);
      await mkdir(join(work, "segments"), { recursive: true });
      await mkdir(join(work, "large"), { recursive: true });
      await copyFile(segment, join(work, "segments", segmentName(1)));
      await truncate(join(work, "segments", segmentName(1)), cut);
      await checkRecovered(work, ids, ends, cut, `cut at ${cut} of ${size}`);
    }
  } finally {
    await cleanup();
  }
});

test("journal recovery: a tail of zeros or garbage (pages never written) is cut like a short file", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const source = join(dir, "source");
    const { ids, ends, segment } = await makeSegment(source, 12);
    const random = rng(7);
    const size = ends[ends.length - 1];
    for (let i = 0; i < 16; i++) {
      const from = Math.floor(random() * size);
      const work = join(dir, `tail-${i}`);
      await mkdir(join(work, "segments"), { recursive: true });
      await mkdir(join(work, "large"), { recursive: true });
      const path = join(work, "segments", segmentName(1));
      await copyFile(segment, path);
      const fh = await fsOpen(path, "r+");
      const junk = Buffer.alloc(size - from + 100, 0);
      if (i % 2 === 1) for (let k = 0; k < junk.length; k++) junk[k] = Math.floor(random() * 256);
      await fh.write(junk, 0, junk.length, from);
      await fh.close();
      await checkRecovered(work, ids, ends, from, `${i % 2 ? "garbage" : "zeros"} from ${from} of ${size}`);
    }
  } finally {
    await cleanup();
  }
});

test("journal recovery: orphan body files in large/ and empty segments are removed", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const first = new JournalSpool(dir);
    await first.open();
    const big = await first.create();
    await big.write(Buffer.alloc(600_000, 0x45));
    await big.commit(sampleEnvelope());
    const partial = await first.create();
    await partial.write(Buffer.alloc(400_000, 0x46));
    // the process "dies" here: no commit, no close
    await writeFile(join(dir, "large", newQueueId()), "junk");
    const warnings: string[] = [];
    const second = new JournalSpool(dir, { onWarning: (m) => warnings.push(m) });
    await second.open();
    // Recovery of the segments found runs after open(), in the background.
    await second.recovered;
    assert.deepEqual(await readdir(join(dir, "large")), [big.id]);
    assert.deepEqual(await second.list(), [big.id]);
    assert.ok((await readAll(second.readBody(big.id))).equals(Buffer.alloc(600_000, 0x45)));
    assert.deepEqual(warnings, ["spool journal: removed 2 partial message(s) left from before a restart"]);
    // segment 1 holds the message; segment 2 (prepared by the first spool, never used) is gone
    const segs = await readdir(join(dir, "segments"));
    assert.ok(segs.includes(segmentName(1)));
    assert.ok(!segs.includes(segmentName(2)), segs.join());
    await second.close();
    await first.close();
  } finally {
    await cleanup();
  }
});

test("journal recovery: a message whose large/ body file is lost is dropped with a warning; the others stay (also when read from the segment's index)", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const first = new JournalSpool(dir);
    await first.open();
    const big = await first.create();
    await big.write(Buffer.alloc(600_000, 0x45));
    await big.commit(sampleEnvelope());
    const small = await first.create();
    await small.write(bodyOf(1));
    await small.commit(sampleEnvelope());
    await first.close();
    // A start in between retires the segment and writes its index; the next start reads that index.
    const between = new JournalSpool(dir);
    await between.open();
    await between.recovered;
    await between.close();
    assert.ok((await readdir(join(dir, "index"))).length > 0, "the segment has an index");
    await unlink(join(dir, "large", big.id));
    const warnings: string[] = [];
    const second = new JournalSpool(dir, { onWarning: (m) => warnings.push(m) });
    await second.open();
    await second.recovered;
    assert.deepEqual(await second.list(), [small.id]);
    assert.deepEqual(warnings, [`spool journal: message ${big.id} has lost its body file large/${big.id}; dropped`]);
    await second.close();
  } finally {
    await cleanup();
  }
});
