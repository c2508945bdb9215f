/**
 * Storage failures under a running server: a FileSpool whose filesystem
 * fails (ENOSPC on write, EIO on fsync, a failed rename or directory fsync)
 * makes DATA end with 451 4.3.0; the server stays up, the next message after
 * the fault clears gets 250, and messages acknowledged before stay intact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileSpool } from "../../src/spool/file-spool.ts";
import { nodeFs, type SpoolFileHandle, type SpoolFs } from "../../src/spool/spool-file.ts";
import { startPetrel, type TestPetrel } from "./petrel.ts";
import {
  SmtpClient, derivedMessage, listDir, queuedId, readSpool, splitReceived,
} from "./fixtures/robust-helpers.ts";

type Op = "create" | "writev" | "sync" | "rename" | "dirsync";

/** The real filesystem, except that operations named in `faults` fail with the given errno code. */
function faultyFs(queueDir: string) {
  const faults = new Map<Op, string>();
  const fail = (op: Op): void => {
    const code = faults.get(op);
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
      fail(path === queueDir ? "dirsync" : "sync");
      return fh.sync();
    },
    close: () => fh.close(),
  });
  const fs: SpoolFs = {
    ...nodeFs,
    async open(path, flags, mode) {
      if (flags !== "r") fail("create");
      return wrap(await nodeFs.open(path, flags, mode), path);
    },
    async rename(from, to) {
      fail("rename");
      return nodeFs.rename(from, to);
    },
  };
  return { fs, faults };
}

type Connect = () => Promise<SmtpClient>;

async function withFaultyPetrel(fn: (p: TestPetrel, connect: Connect, faults: Map<Op, string>, spoolDir: string) => Promise<void>): Promise<void> {
  const spoolDir = await mkdtemp(join(tmpdir(), "petrel-robust-spool-"));
  const { fs, faults } = faultyFs(join(spoolDir, "queue"));
  const spool = new FileSpool(spoolDir, { fs });
  const p = await startPetrel({}, { spool });
  const clients: SmtpClient[] = [];
  const connect: Connect = async () => {
    const c = await SmtpClient.connect(p.mx);
    clients.push(c);
    await c.ehlo();
    return c;
  };
  try {
    await fn(p, connect, faults, spoolDir);
  } finally {
    for (const c of clients) c.close();
    SmtpClient.closeAll();
    await p.stop();
    await rm(spoolDir, { recursive: true, force: true });
  }
}

const BIG = 40; // derived messages are 1–20 KiB; this one is bigger, streamed in several writes
function bigMessage(n: number): Buffer {
  const parts = [derivedMessage(BIG, n)];
  for (let i = 0; i < 12; i++) parts.push(Buffer.from(`${"z".repeat(8190)}\r\n`));
  return Buffer.concat(parts);
}

for (const [op, code] of [["writev", "ENOSPC"], ["sync", "EIO"], ["rename", "ENOSPC"], ["dirsync", "EIO"], ["create", "ENOSPC"]] as const) {
  test(`${op} fails with ${code}: DATA ends 451 4.3.0, server stays up, later mail gets 250, earlier mail intact`, async () => {
    await withFaultyPetrel(async (p, connect, faults, spoolDir) => {
      const c = await connect();
      const before = queuedId(await c.send("a@example.org", ["postmaster@example.test"], derivedMessage(1, 1)));

      faults.set(op, code);
      const small = await c.send("a@example.org", ["postmaster@example.test"], derivedMessage(1, 2));
      // ("create": the spool file is made at DATA, so that is refused before any 354.)
      assert.match(small.text, /^451 4\.3\.0 /, `small message: ${small.text}`);
      if (op === "create") assert.equal((await c.cmd("RSET")).code, 250);
      const big = await c.send("a@example.org", ["postmaster@example.test"], bigMessage(1));
      assert.match(big.text, /^451 4\.3\.0 /, `large message: ${big.text}`);
      if (op === "create") assert.equal((await c.cmd("RSET")).code, 250);
      // The session is still usable, and other sessions too.
      assert.equal((await c.cmd("NOOP")).code, 250);
      const other = await connect();

      faults.clear();
      const after = queuedId(await c.send("a@example.org", ["postmaster@example.test"], derivedMessage(1, 3)));
      const afterBig = queuedId(await other.send("a@example.org", ["postmaster@example.test"], bigMessage(2)));
      await c.quit();
      await other.quit();

      const stored = await readSpool(p.server.spool);
      assert.deepEqual(stored.map((m) => m.id).sort(), [before, after, afterBig].sort(), "exactly the acknowledged messages");
      const content = new Map(stored.map((m) => [m.id, splitReceived(m.body).content]));
      assert.ok(content.get(before)!.equals(derivedMessage(1, 1)));
      assert.ok(content.get(after)!.equals(derivedMessage(1, 3)));
      assert.ok(content.get(afterBig)!.equals(bigMessage(2)));
      assert.deepEqual(await listDir(join(spoolDir, "tmp")), [], "failed messages left nothing in tmp/");
    });
  });
}
