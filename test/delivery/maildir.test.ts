import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat, writeFile, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { deliverToMaildir, maildirFolder, sanitizeHostname, uniqueName } from "../../src/delivery/maildir.ts";
import { afterWritten, nodeMaildirFs, type MaildirFs, type MaildirFile } from "../../src/delivery/maildir-fs.ts";
import { CrlfToLf } from "../../src/delivery/crlf-to-lf.ts";
import { maildirSize } from "../../src/delivery/maildir-size.ts";
import { chunked, lf, tempDir } from "./helpers.ts";
import { requireRoot } from "../support/peers.ts";

const message = Buffer.from("Received: from x by y\r\nSubject: hi\r\n\r\nline 1\r\n.dot line\r\nbare\rcr\r\n\r\nlast\r\n");
const headers = { returnPath: "sender@example.org", deliveredTo: "rcpt@example.com" };
const expected = Buffer.concat([Buffer.from("Return-Path: <sender@example.org>\nDelivered-To: rcpt@example.com\n"), lf(message)]);

test("delivers into new/ via tmp/, LF line ends, trace headers on top, S= and W= sizes", async (t) => {
  const dir = join(await tempDir(t), "maildir");
  const r = await deliverToMaildir(dir, chunked(message, 5), headers, { hostname: "mx.example.com" });
  assert.equal(r.outcome.status, "delivered");
  const names = await readdir(join(dir, "new"));
  assert.equal(names.length, 1);
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
  assert.deepEqual(await readdir(join(dir, "cur")), []);
  assert.equal(r.path, join(dir, "new", names[0]));
  const content = await readFile(r.path!);
  assert.deepEqual(content, expected);
  const m = /^(\d+)\.M(\d{6})P(\d+)Q(\d+)R([0-9a-f]{8})\.mx\.example\.com,S=(\d+),W=(\d+)$/.exec(names[0]);
  assert.ok(m, names[0]);
  assert.equal(Number(m[3]), process.pid);
  assert.ok(Math.abs(Number(m[1]) - Date.now() / 1000) < 10);
  assert.equal(Number(m[6]), content.length);
  assert.equal(r.size, content.length);
  const lines = content.toString("latin1").split("\n").length - 1;
  assert.equal(Number(m[7]), content.length + lines, "W= is the size with CRLF line ends");
  for (const sub of ["", "cur", "new", "tmp"]) assert.equal((await stat(join(dir, sub))).mode & 0o777, 0o700, sub);
  assert.equal((await stat(r.path!)).mode & 0o777, 0o600);
});

test("CRLF → LF at every chunk split; bare CR kept; a final CR kept", () => {
  const input = Buffer.from("a\r\nb\rc\r\r\n\r\n\rd\r");
  const want = "a\nb\rc\r\n\n\rd\r";
  for (let cut = 0; cut <= input.length; cut++) {
    for (let cut2 = cut; cut2 <= input.length; cut2++) {
      const c = new CrlfToLf();
      const out = Buffer.concat([c.convert(input.subarray(0, cut)), c.convert(input.subarray(cut, cut2)), c.convert(input.subarray(cut2)), c.flush()]);
      assert.equal(out.toString("latin1"), want, `${cut},${cut2}`);
    }
  }
});

test("the null sender is written as Return-Path: <>", async (t) => {
  const dir = await tempDir(t);
  const r = await deliverToMaildir(dir, Readable.from([Buffer.from("Subject: bounce\r\n\r\nx\r\n")]), { returnPath: "", deliveredTo: "a@b" });
  assert.equal(r.outcome.status, "delivered");
  assert.match((await readFile(r.path!, "latin1")), /^Return-Path: <>\nDelivered-To: a@b\nSubject: bounce\n/);
});

test("200 concurrent deliveries into one Maildir get 200 distinct names and all land in new/", async (t) => {
  const dir = await tempDir(t);
  const results = await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      deliverToMaildir(dir, chunked(Buffer.from(`Subject: ${i}\r\n\r\nbody ${i}\r\n`), 4), headers, { hostname: "h" })),
  );
  assert.ok(results.every((r) => r.outcome.status === "delivered"));
  const names = await readdir(join(dir, "new"));
  assert.equal(names.length, 200);
  assert.equal(new Set(names.map((n) => n.split(",")[0])).size, 200);
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
  const bodies = new Set(await Promise.all(names.map(async (n) => /body (\d+)/.exec(await readFile(join(dir, "new", n), "latin1"))![1])));
  assert.equal(bodies.size, 200);
});

test("unique names differ even when generated in the same microsecond", () => {
  const names = new Set(Array.from({ length: 1000 }, () => uniqueName("h")));
  assert.equal(names.size, 1000);
});

test("the microseconds are zero-padded to six digits (M%06u, as Dovecot), so names of one second sort in arrival order", () => {
  const second = 1_700_000_000;
  assert.match(uniqueName("h", second * 1e6 + 42), /^1700000000\.M000042P/);
  assert.match(uniqueName("h", second * 1e6), /^1700000000\.M000000P/);
  assert.match(uniqueName("h", second * 1e6 + 999_999), /^1700000000\.M999999P/);
  const arrivals = [5, 40, 300, 7_000, 80_000, 900_000].map((us) => uniqueName("h", second * 1e6 + us));
  assert.deepEqual([...arrivals].sort(), arrivals);
});

test("host names are sanitised: / : , and \\ are escaped as octal", () => {
  assert.equal(sanitizeHostname("a/b:c,d\\e"), "a\\057b\\072c\\054d\\134e");
  assert.ok(!uniqueName("x/y:z").includes("/"));
});

test("fsyncs the file and new/ (and the directories it created)", async (t) => {
  const dir = join(await tempDir(t), "d", "maildir");
  const synced: string[] = [];
  let fileSyncs = 0;
  const fs: MaildirFs = {
    ...nodeMaildirFs,
    async createExclusive(path) {
      const f = await nodeMaildirFs.createExclusive(path);
      return { ...f, sync: async () => { fileSyncs++; await f.sync(); } };
    },
    async syncDir(path) { synced.push(path); await nodeMaildirFs.syncDir(path); },
  };
  const r = await deliverToMaildir(dir, chunked(message, 100), headers, { fs });
  assert.equal(r.outcome.status, "delivered");
  assert.equal(fileSyncs, 1);
  assert.equal(synced.at(-1), join(dir, "new"));
  for (const d of [join(dir, "tmp"), join(dir, "cur"), dir, join(dir, "..")]) assert.ok(synced.includes(d), d);

  synced.length = 0;
  fileSyncs = 0;
  await deliverToMaildir(dir, chunked(message, 100), headers, { fs });
  assert.deepEqual(synced, [join(dir, "new")], "existing directories are not synced again");
  await deliverToMaildir(dir, chunked(message, 100), headers, { fs, fsync: false });
  assert.equal(fileSyncs, 1);
});

/** A file system that fails writes with `code` once `after` bytes were written. */
function failingFs(code: string, after: number, onWrite?: () => void): MaildirFs {
  return {
    ...nodeMaildirFs,
    async createExclusive(path) {
      const f = await nodeMaildirFs.createExclusive(path);
      let written = 0;
      const file: MaildirFile = {
        ...f,
        async write(data) {
          onWrite?.();
          const length = data.reduce((n, b) => n + b.length, 0);
          if (written + length > after) throw Object.assign(new Error(`${code}: injected`), { code });
          written += length;
          await f.write(data);
        },
      };
      return file;
    },
  };
}

test("ENOSPC while writing: deferred 4.3.0, nothing left in tmp/ or new/", async (t) => {
  const dir = await tempDir(t);
  for (const after of [0, 10, 80]) {
    const r = await deliverToMaildir(dir, chunked(message, 8), headers, { fs: failingFs("ENOSPC", after) });
    assert.equal(r.outcome.status, "deferred");
    assert.ok(r.outcome.status === "deferred" && r.outcome.enhanced === "4.3.0" && /no space/.test(r.outcome.diagnostic));
    assert.deepEqual(await readdir(join(dir, "tmp")), []);
    assert.deepEqual(await readdir(join(dir, "new")), []);
  }
});

test("EDQUOT (file-system quota) is a full mailbox: 4.2.2, or 5.2.2 when configured to bounce", async (t) => {
  const dir = await tempDir(t);
  const r = await deliverToMaildir(dir, chunked(message, 8), headers, { fs: failingFs("EDQUOT", 20) });
  assert.ok(r.outcome.status === "deferred" && r.outcome.enhanced === "4.2.2");
  const b = await deliverToMaildir(dir, chunked(message, 8), headers, { fs: failingFs("EDQUOT", 20), quotaFull: "bounce" });
  assert.ok(b.outcome.status === "failed" && b.outcome.enhanced === "5.2.2");
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
});

test("a failing rename or fsync removes the tmp file", async (t) => {
  const dir = await tempDir(t);
  const r = await deliverToMaildir(dir, chunked(message, 8), headers, {
    fs: { ...nodeMaildirFs, rename: async () => { throw Object.assign(new Error("EIO: injected"), { code: "EIO" }); } },
  });
  assert.ok(r.outcome.status === "deferred" && r.outcome.enhanced === "4.3.0" && /EIO/.test(r.outcome.diagnostic));
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
  const s = await deliverToMaildir(dir, chunked(message, 8), headers, {
    fs: { ...nodeMaildirFs, createExclusive: async (p) => ({ ...(await nodeMaildirFs.createExclusive(p)), sync: async () => { throw Object.assign(new Error("EIO"), { code: "EIO" }); } }) },
  });
  assert.equal(s.outcome.status, "deferred");
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
  assert.deepEqual(await readdir(join(dir, "new")), []);
});

test("a message stream that fails midway: deferred, tmp file removed", async (t) => {
  const dir = await tempDir(t);
  const body = new Readable({
    read() {
      this.push("Subject: x\r\n\r\n");
      this.destroy(new Error("spool read error"));
    },
  });
  const r = await deliverToMaildir(dir, body, headers);
  assert.ok(r.outcome.status === "deferred" && /spool read error/.test(r.outcome.diagnostic));
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
  assert.deepEqual(await readdir(join(dir, "new")), []);
});

test("quota: existing S= sizes (and stat for names without S=, and Maildir++ folders) count; full → 4.2.2 or 5.2.2; tmp cleaned", async (t) => {
  const dir = await tempDir(t);
  for (const sub of ["cur", "new", "tmp", ".Sent/cur", ".Sent/new"]) await mkdir(join(dir, sub), { recursive: true });
  await writeFile(join(dir, "cur", "1.M1P1.h,S=1000,W=1020:2,S"), "x"); // S= wins over the real size
  await writeFile(join(dir, "new", "2.M2P2.h"), "y".repeat(500));
  await writeFile(join(dir, ".Sent", "cur", "3.M3P3.h,S=200:2,S"), "z");
  assert.equal(await maildirSize(nodeMaildirFs, dir), 1700);

  const size = expected.length;
  const ok = await deliverToMaildir(dir, chunked(message, 8), headers, { quota: 1700 + size });
  assert.equal(ok.outcome.status, "delivered", "exactly at the quota fits");

  const deferred = await deliverToMaildir(dir, chunked(message, 8), headers, { quota: 1700 + size + 10 });
  assert.ok(deferred.outcome.status === "deferred" && deferred.outcome.enhanced === "4.2.2" && /mailbox full/.test(deferred.outcome.diagnostic));
  const bounced = await deliverToMaildir(dir, chunked(message, 8), headers, { quota: 1700 + size + 10, quotaFull: "bounce" });
  assert.ok(bounced.outcome.status === "failed" && bounced.outcome.enhanced === "5.2.2");
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
  assert.equal((await readdir(join(dir, "new"))).length, 2);
});

test("quota: a message larger than the whole quota is 5.2.3 at once, whether the mailbox is empty or already full, in either quotaFull mode", async (t) => {
  const size = expected.length;
  for (const quotaFull of ["defer", "bounce"] as const) {
    const empty = await tempDir(t);
    const r = await deliverToMaildir(empty, chunked(message, 8), headers, { quota: size - 1, quotaFull });
    assert.ok(r.outcome.status === "failed" && r.outcome.enhanced === "5.2.3", JSON.stringify(r.outcome));
    assert.equal(r.outcome.diagnostic, `message too large for the mailbox: ${size} bytes exceed its whole quota of ${size - 1} bytes`);
    assert.deepEqual(await readdir(join(empty, "tmp")), []);
    assert.deepEqual(await readdir(join(empty, "new")), []);

    // Already over the quota: the size decides between waiting (it may fit once mail is expunged) and bouncing.
    const full = await tempDir(t);
    await mkdir(join(full, "cur"), { recursive: true });
    await writeFile(join(full, "cur", "1.M1P1.h,S=5000:2,S"), "x");
    const big = await deliverToMaildir(full, chunked(message, 8), headers, { quota: size - 1, quotaFull });
    assert.ok(big.outcome.status === "failed" && big.outcome.enhanced === "5.2.3", JSON.stringify(big.outcome));
    const fits = await deliverToMaildir(full, chunked(message, 8), headers, { quota: size, quotaFull });
    assert.equal(fits.outcome.status === "failed" || fits.outcome.status === "deferred" ? fits.outcome.enhanced : "", quotaFull === "defer" ? "4.2.2" : "5.2.2");
    assert.deepEqual(await readdir(join(full, "new")), []);
  }
});

test("X-Original-To sits between Return-Path and Delivered-To, as Postfix writes them", async (t) => {
  const dir = await tempDir(t);
  const r = await deliverToMaildir(dir, chunked(message, 8), { ...headers, originalTo: "rcpt+tag@example.com" });
  assert.deepEqual(await readFile(r.path!), Buffer.concat([Buffer.from("Return-Path: <sender@example.org>\nX-Original-To: rcpt+tag@example.com\nDelivered-To: rcpt@example.com\n"), lf(message)]));
  assert.match(r.path!, new RegExp(`,S=${r.size},W=${r.size! + lf(message).toString("latin1").split("\n").length - 1 + 3}$`));
  const evil = await deliverToMaildir(dir, chunked(message, 8), { ...headers, originalTo: "a@b\r\nX-Evil: 1" });
  assert.equal(evil.outcome.status, "failed");
});

test("addresses with control characters are never written into a header", async (t) => {
  const dir = await tempDir(t);
  const r = await deliverToMaildir(dir, chunked(message, 8), { returnPath: "a@b\r\nX-Evil: 1", deliveredTo: "c@d" });
  assert.equal(r.outcome.status, "failed");
});

test("a long line (1 MiB) and 8-bit bytes stream through unchanged", async (t) => {
  const dir = await tempDir(t);
  const body = Buffer.concat([Buffer.from("Subject: big\r\n\r\n"), Buffer.alloc(1 << 20, 0xe9), Buffer.from("\r\nünï\r\n")]);
  const r = await deliverToMaildir(dir, chunked(body, 65536), headers);
  assert.equal(r.outcome.status, "delivered");
  assert.deepEqual(await readFile(r.path!), Buffer.concat([Buffer.from("Return-Path: <sender@example.org>\nDelivered-To: rcpt@example.com\n"), lf(body)]));
});

test("concurrent deliveries into one Maildir share the fsync of new/ (group commit), each still waiting for one", async (t) => {
  const dir = await tempDir(t);
  let newSyncs = 0;
  const fs: MaildirFs = {
    ...nodeMaildirFs,
    async syncDir(path) {
      if (path.endsWith("/new")) newSyncs++;
      await nodeMaildirFs.syncDir(path);
    },
  };
  // Create the Maildir first so only new/ syncs are counted below.
  await deliverToMaildir(dir, Readable.from([Buffer.from("x\r\n")]), { returnPath: "a@b", deliveredTo: "c@d" }, { fs });
  newSyncs = 0;
  const n = 50;
  const results = await Promise.all(Array.from({ length: n }, (_, i) =>
    deliverToMaildir(dir, Readable.from([Buffer.from(`m${i}\r\n`)]), { returnPath: "a@b", deliveredTo: "c@d" }, { fs })));
  assert.ok(results.every((r) => r.outcome.status === "delivered"));
  assert.equal((await readdir(join(dir, "new"))).length, n + 1);
  assert.ok(newSyncs >= 1 && newSyncs < n, `${newSyncs} fsyncs of new/ for ${n} deliveries`);
});

test("delivery.owner: every directory created and the file belong to the owner; private modes without a group, shared (2770/0660) with one", async (t) => {
  requireRoot("giving delivered files to another user");
  const root = await tempDir(t);
  const nobody = 65534;
  const privateBox = join(root, "mail", "example.com", "al");
  const a = await deliverToMaildir(privateBox, chunked(message, 7), headers, { hostname: "h", owner: { uid: nobody, gid: nobody, shared: false } });
  assert.equal(a.outcome.status, "delivered", JSON.stringify(a.outcome));
  for (const d of [join(root, "mail"), join(root, "mail", "example.com"), privateBox, join(privateBox, "new"), join(privateBox, "cur"), join(privateBox, "tmp")]) {
    const st = await stat(d);
    assert.deepEqual([st.uid, st.gid, (st.mode & 0o7777).toString(8)], [nobody, nobody, "700"], d);
  }
  const file = await stat(a.path!);
  assert.deepEqual([file.uid, file.gid, (file.mode & 0o7777).toString(8)], [nobody, nobody, "600"]);
  assert.ok(!(await stat(root)).uid, "the directory that already existed is left alone");

  const sharedBox = join(root, "mail", "example.com", "bo");
  const b = await deliverToMaildir(sharedBox, chunked(message, 7), headers, { hostname: "h", owner: { uid: -1, gid: 8, shared: true } });
  assert.equal(b.outcome.status, "delivered");
  for (const d of [sharedBox, join(sharedBox, "new")]) {
    const st = await stat(d);
    assert.deepEqual([st.uid, st.gid, (st.mode & 0o7777).toString(8)], [0, 8, "2770"], d);
  }
  const shared = await stat(b.path!);
  assert.deepEqual([shared.uid, shared.gid, (shared.mode & 0o7777).toString(8)], [0, 8, "660"]);
  assert.equal((await stat(join(root, "mail", "example.com"))).uid, nobody, "an existing parent keeps its owner");
});

test("a Maildir++ folder: .<name>/ with cur/ new/ tmp/ and the maildirfolder marker, beside the mailbox's own; bad names mean the inbox", async (t) => {
  const dir = join(await tempDir(t), "maildir");
  const junk = await deliverToMaildir(dir, chunked(message, 9), headers, { hostname: "mx.example.com", folder: "Junk" });
  assert.equal(junk.outcome.status, "delivered");
  assert.equal(junk.path!.startsWith(join(dir, ".Junk", "new") + "/"), true, junk.path);
  assert.deepEqual(await readFile(junk.path!), expected);
  assert.deepEqual((await readdir(join(dir, ".Junk"))).sort(), ["cur", "maildirfolder", "new", "tmp"]);
  assert.deepEqual((await readdir(dir)).sort(), [".Junk", "cur", "new", "tmp"], "the mailbox itself exists too");
  const nested = await deliverToMaildir(dir, chunked(message, 9), headers, { folder: "Archive.2024" });
  assert.equal(nested.path!.startsWith(join(dir, ".Archive.2024", "new") + "/"), true);
  for (const bad of ["", ".hidden", "a..b", "trailing.", "../escape", "a/b", "back\\slash", "nul\0", "INBOX", "inbox"]) {
    const r = await deliverToMaildir(dir, chunked(message, 9), headers, { folder: bad });
    assert.equal(r.path!.startsWith(join(dir, "new") + "/"), true, `${JSON.stringify(bad)} → ${r.path}`);
  }
  assert.equal(maildirFolder("Junk"), ".Junk");
  assert.equal(maildirFolder("x".repeat(256)), null);
});

test("a Maildir (or its tmp/ or new/) removed after a delivery is made again by the next one", async (t) => {
  const dir = join(await tempDir(t), "m");
  const deliver = async () => (await deliverToMaildir(dir, chunked(message, 100), headers)).outcome.status;
  assert.equal(await deliver(), "delivered");
  for (const gone of [join(dir, "tmp"), join(dir, "new"), dir]) {
    await rm(gone, { recursive: true });
    assert.equal(await deliver(), "delivered", `after removing ${gone}`);
    assert.ok((await readdir(join(dir, "new"))).length >= 1);
    for (const sub of ["cur", "new", "tmp"]) assert.ok((await stat(join(dir, sub))).isDirectory(), sub);
  }
});

test("a short writev resumes exactly where the kernel stopped", () => {
  const bufs = [Buffer.from("abc"), Buffer.from("de"), Buffer.from("fgh")];
  const rest = (n: number) => Buffer.concat(afterWritten(bufs, n)).toString();
  assert.deepEqual([0, 1, 3, 4, 5, 7, 8].map(rest), ["abcdefgh", "bcdefgh", "defgh", "efgh", "fgh", "h", ""]);
});

test("a message given as chunks in memory is written as a stream's would be", async (t) => {
  const dir = await tempDir(t);
  const parts = [message.subarray(0, 5), message.subarray(5, 23), message.subarray(23)];
  const r = await deliverToMaildir(dir, parts, headers);
  assert.equal(r.outcome.status, "delivered");
  assert.deepEqual(await readFile(r.path!), expected);
});
