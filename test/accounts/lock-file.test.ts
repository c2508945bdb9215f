import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileAccountStore } from "../../src/accounts/file-account-store.ts";
import { AccountError } from "../../src/accounts/account-store.ts";
import { acquireLock } from "../../src/accounts/lock-file.ts";

const WRITER = fileURLToPath(new URL("./concurrent-writer.ts", import.meta.url));

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-lock-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const store = (dataDir: string, lockTimeout?: number) =>
  new FileAccountStore({ dataDir, configDomains: ["example.com"], reloadInterval: 0, lockTimeout });

/** The pid of a process that has exited (so certainly not alive now, barring immediate reuse). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

test("two store instances writing at once lose nothing", async (t) => {
  const dir = await tempDir(t);
  const a = store(dir);
  const b = store(dir);
  const adds: Promise<void>[] = [];
  for (let i = 0; i < 6; i++) {
    adds.push(a.addUser(`a${i}@example.com`, "pw"), b.addUser(`b${i}@example.com`, "pw"));
    adds.push(i % 2 ? a.addAlias(`la${i}@example.com`, "postmaster@example.com") : b.addAlias(`lb${i}@example.com`, "postmaster@example.com"));
  }
  await Promise.all(adds);
  const users = (await store(dir).listUsers()).map((u) => u.address);
  assert.equal(users.length, 12);
  assert.equal((await store(dir).listAliases()).length, 6);
  assert.deepEqual(await readdir(dir), ["accounts.json"]); // the lock is gone
});

test("two processes and this one writing at once lose nothing", async (t) => {
  const dir = await tempDir(t);
  const here = store(dir);
  const results = await Promise.all([
    run([WRITER, dir, "p", "6"]),
    run([WRITER, dir, "q", "6"]),
    (async () => {
      for (let i = 0; i < 4; i++) await here.addUser(`h${i}@example.com`, "pw");
    })(),
  ]);
  for (const r of results.slice(0, 2) as { code: number; stdout: string; stderr: string }[]) {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "done\n");
  }
  const users = (await store(dir).listUsers()).map((u) => u.address);
  assert.equal(users.length, 16, users.join(" "));
  assert.equal(await store(dir).verifyPlain("q5@example.com", "pw-q5"), "q5@example.com");
});

test("a stale lock (its process is dead) is taken over", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "accounts.lock"), `${deadPid()}\n`);
  await store(dir, 2000).addDomain("example.org");
  assert.deepEqual(await store(dir).listDomains(), ["example.com", "example.org"]);
  assert.deepEqual(await readdir(dir), ["accounts.json"]);
});

test("a lock held by a live process makes writers wait, then give up with a clear error", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "accounts.lock"), "1\n"); // pid 1 is always alive
  await assert.rejects(store(dir, 50).addDomain("example.org"), (err: unknown) => {
    assert.ok(err instanceof AccountError);
    assert.equal(err.code, "locked");
    assert.match(err.message, /^the accounts are locked by process 1 \(.*accounts\.lock\); if no petrel command is running, remove that file$/);
    return true;
  });
  assert.equal(await readFile(join(dir, "accounts.lock"), "utf8"), "1\n"); // not touched
  assert.deepEqual(await store(dir).listDomains(), ["example.com"]);
});

test("a lock held in this process by another holder is waited for, then taken", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "accounts.lock");
  const release = await acquireLock(path);
  let taken = false;
  const second = acquireLock(path).then((r) => {
    taken = true;
    return r;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(taken, false);
  await release();
  const release2 = await second;
  assert.equal(await readFile(path, "utf8"), `${process.pid}\n`);
  await release2();
  assert.deepEqual(await readdir(dir), []);
});

test("an empty lock file is someone being created: waited for while fresh, broken when old", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "accounts.lock");
  await writeFile(path, "");
  await assert.rejects(acquireLock(path, { timeout: 30 }), (err: unknown) => err instanceof AccountError && err.code === "locked");
  const old = new Date(Date.now() - 60_000);
  await utimes(path, old, old);
  const release = await acquireLock(path, { timeout: 1000 });
  await release();
});

test("a lock with our own pid that nobody here holds (left by an earlier process with the same pid) is stale", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "accounts.lock");
  await writeFile(path, `${process.pid}\n`);
  const release = await acquireLock(path, { timeout: 1000 });
  await release();
});
