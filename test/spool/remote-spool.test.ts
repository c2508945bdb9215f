/**
 * The spool across a process boundary (the SMTP workers' spool): a
 * RemoteSpool's messages reach the owner's real journal spool through a
 * SpoolHost, byte for byte, and only a commit the owner made durable
 * resolves; a failure there is the writer's SpoolError; a writer process
 * that goes away leaves nothing half-written behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { JournalSpool } from "../../src/spool/journal-spool.ts";
import { RemoteSpool, type SpoolReply, type SpoolRequest } from "../../src/spool/remote-spool.ts";
import { SpoolHost } from "../../src/spool/spool-host.ts";
import { SpoolError, type Spool, type SpoolWriter } from "../../src/spool/spool.ts";
import { readAll, sampleEnvelope, tempDir } from "./helpers.ts";

/** A RemoteSpool wired to a SpoolHost over `spool`, each message structured-cloned as it would be over IPC. */
function pair(spool: Spool) {
  const committed: string[] = [];
  const sent: SpoolRequest["t"][] = [];
  let remote: RemoteSpool;
  const host = new SpoolHost({
    spool,
    onCommitted: (id) => committed.push(id),
    reply: (m: SpoolReply) => setImmediate(() => remote.answer(structuredClone(m))),
  });
  remote = new RemoteSpool({
    async send(m) {
      sent.push(m.t);
      const copy = structuredClone(m);
      setImmediate(() => host.handle(copy));
    },
  });
  return { remote, host, committed, sent };
}

async function journal() {
  const { dir, cleanup } = await tempDir();
  const spool = new JournalSpool(dir);
  await spool.open();
  return { spool, async done() { await spool.close(); await cleanup(); } };
}

test("a message written through a RemoteSpool is the owner's, byte for byte, once its commit resolves — small in one request, large streamed", async () => {
  const j = await journal();
  try {
    const { remote, committed, sent } = pair(j.spool);
    const small = Buffer.from("Subject: small\r\n\r\nhello\r\n");
    const w1 = await remote.create();
    await w1.write(small);
    assert.deepEqual(await j.spool.list(), [], "nothing before the commit");
    await w1.commit(sampleEnvelope({ size: small.length }));
    assert.deepEqual(committed, [w1.id]);
    assert.deepEqual(await readAll(j.spool.readBody(w1.id)), small);
    assert.deepEqual(sent.filter((t) => t !== "reserve"), ["commit"], "a small body rides with its commit");

    const large = randomBytes(300 * 1024);
    const w2 = await remote.create();
    for (let at = 0; at < large.length; at += 16 * 1024) await w2.write(large.subarray(at, at + 16 * 1024));
    await w2.commit(sampleEnvelope({ size: large.length }));
    assert.deepEqual(await readAll(j.spool.readBody(w2.id)), large);
    assert.deepEqual(committed, [w1.id, w2.id]);
    assert.equal((await j.spool.readEnvelope(w2.id)).size, large.length);
    assert.notEqual(w1.id, w2.id);
  } finally {
    await j.done();
  }
});

test("many sessions opening messages at once all get an entry: a batch opened ahead is shared, the next sized for those waiting", async () => {
  const j = await journal();
  try {
    const { remote, committed } = pair(j.spool);
    const writers = await Promise.all(Array.from({ length: 60 }, () => remote.create()));
    assert.equal(new Set(writers.map((w) => w.id)).size, 60);
    await Promise.all(writers.map(async (w, i) => {
      await w.write(Buffer.from(`message ${i}\r\n`));
      await w.commit(sampleEnvelope());
    }));
    assert.equal(committed.length, 60);
    assert.equal((await j.spool.list()).length, 60);
  } finally {
    await j.done();
  }
});

test("a commit that fails in the owner's spool rejects the writer's commit with its SpoolError, and nothing is handed on", async () => {
  const j = await journal();
  try {
    const failing: Spool = Object.assign(Object.create(j.spool) as Spool, {
      create: async (): Promise<SpoolWriter> => {
        const w = await j.spool.create();
        return {
          id: w.id,
          write: (c: Buffer) => w.write(c),
          commit: async () => {
            throw new SpoolError("no space left on device", { code: "ENOSPC" });
          },
          abort: () => w.abort(),
        };
      },
    });
    const { remote, committed } = pair(failing);
    const w = await remote.create();
    await w.write(Buffer.from("x\r\n"));
    await assert.rejects(w.commit(sampleEnvelope()), (err: unknown) => {
      assert.ok(err instanceof SpoolError);
      assert.equal(err.code, "ENOSPC");
      assert.match(err.message, /no space left on device/);
      return true;
    });
    assert.deepEqual(committed, []);
    assert.deepEqual(await j.spool.list(), []);
  } finally {
    await j.done();
  }
});

test("when the writing process is gone, what it had not committed is dropped and its writers fail with EPIPE", async () => {
  const j = await journal();
  try {
    const { remote, host, committed } = pair(j.spool);
    const kept = await remote.create();
    await kept.write(Buffer.from("kept\r\n"));
    await kept.commit(sampleEnvelope());
    const cut = await remote.create();
    await cut.write(Buffer.from("half a message"));
    assert.ok(host.size > 0, "open entries: the one being written and those reserved ahead");
    await host.abortAll();
    assert.equal(host.size, 0);
    remote.disconnect();
    await assert.rejects(cut.commit(sampleEnvelope()), (err: unknown) => err instanceof SpoolError && err.code === "EPIPE");
    await assert.rejects(remote.create(), (err: unknown) => err instanceof SpoolError && err.code === "EPIPE");
    assert.deepEqual(await j.spool.list(), [kept.id]);
    assert.deepEqual(committed, [kept.id]);
  } finally {
    await j.done();
  }
});

test("a RemoteSpool only writes: reading and removing belong to the owner", async () => {
  const { remote } = pair({} as Spool);
  await assert.rejects(remote.list(), /only the process that owns the spool reads it/);
  await assert.rejects(remote.readEnvelope(), /only the process that owns the spool reads it/);
  await assert.rejects(remote.remove(), /only the process that owns the spool reads it/);
  assert.throws(() => remote.readBody(), /only the process that owns the spool reads it/);
});
