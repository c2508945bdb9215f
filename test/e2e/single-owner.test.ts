/**
 * One owner of a data directory, through the real `petrel` CLI: a second
 * `petrel serve` on a directory a running Petrel holds is refused at once
 * (exit 75, naming the directory and the holder's pid), changes no file, and
 * the running instance keeps delivering; a SIGKILLed holder leaves no lock
 * behind; offline `petrel queue` commands take the same lock.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { lstat, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { lockDataDir } from "../../src/system/data-dir-lock.ts";
import {
  SmtpClient, pollUntil, readDelivered, runPetrel, serveMustExit, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";

/** Every entry under `dir`: type, size, mtime and inode, by relative path. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string) => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const path = join(rel, name);
      const st = await lstat(join(dir, path));
      const type = st.isDirectory() ? "dir" : st.isFile() ? "file" : st.isSocket() ? "socket" : "other";
      out.set(path, `${type} size=${st.size} mtime=${st.mtimeMs} ino=${st.ino}`);
      if (st.isDirectory()) await walk(path);
    }
  };
  await walk(".");
  return out;
}

/** A snapshot that stays the same for a moment: the running instance is idle. */
async function settledSnapshot(dir: string): Promise<Map<string, string>> {
  let last = await snapshot(dir);
  return pollUntil(async () => {
    await new Promise((r) => setTimeout(r, 150));
    const next = await snapshot(dir);
    const same = next.size === last.size && [...next].every(([k, v]) => last.get(k) === v);
    last = next;
    return same ? next : undefined;
  }, 10_000, 0);
}

async function sendTo(port: number, subject: string): Promise<void> {
  const c = await SmtpClient.connect(port);
  try {
    await c.ehlo();
    const r = await c.send("sender@example.org", ["postmaster@localhost"], `Subject: ${subject}\r\n\r\nbody of ${subject}\r\n`);
    assert.equal(r.code, 250, r.text);
  } finally {
    await c.quit();
  }
}

async function deliveredSubjects(dataDir: string): Promise<string[]> {
  const found = await readDelivered(dataDir);
  return found.map((d) => /\r\nSubject: ([^\r]*)\r\n/.exec(`\r\n${d.content.toString("latin1")}`)?.[1] ?? "?").sort();
}

test("a second petrel serve on a data directory in use is refused (75, dir and pid named), changes no file; both messages are delivered", { timeout: 90_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let first: PetrelProcess | null = null;
  try {
    const dataDir = join(dir, "data");
    const config = await writeConfig(dir, { dataDir, listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }], queue: { minBackoff: 1 } });
    first = await servePetrel(config, 1);
    const port = first.port("mx");
    assert.equal((await readFile(join(dataDir, "petrel.pid"), "utf8")).trim(), String(first.pid), "petrel.pid names the holder");

    await sendTo(port, "before");
    await pollUntil(async () => ((await deliveredSubjects(dataDir)).length === 1 ? true : undefined), 15_000);
    const before = await settledSnapshot(dataDir);

    const otherPorts = await writeConfig(dir, { dataDir, listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }, { address: "127.0.0.1", port: 0, role: "submission" }] }, "other-ports.yaml");
    const samePorts = await writeConfig(dir, { dataDir, listeners: [{ address: "127.0.0.1", port, role: "mx" }] }, "same-ports.yaml");
    for (const second of [otherPorts, samePorts]) {
      const r = await serveMustExit(second);
      assert.equal(r.code, 75, r.stderr);
      assert.ok(r.stderr.includes(`the data directory ${dataDir} is in use by process ${first.pid}`), r.stderr);
      assert.match(r.stderr, /Nothing was started and nothing changed/);
      assert.deepEqual(await snapshot(dataDir), before, "the refused start changed nothing in the data directory");
    }

    await sendTo(port, "after");
    await pollUntil(async () => ((await deliveredSubjects(dataDir)).length === 2 ? true : undefined), 15_000);
    assert.deepEqual(await deliveredSubjects(dataDir), ["after", "before"]);
    const exit = await stopPetrel(first);
    first = null;
    assert.equal(exit.code, 0);
    await assert.rejects(readFile(join(dataDir, "petrel.pid")), /ENOENT/, "the pid file goes with the process");
  } finally {
    if (first) await stopPetrel(first);
    SmtpClient.closeAll();
    await cleanup();
  }
});

test("a SIGKILLed petrel serve leaves no lock: the next start runs (over the stale petrel.pid)", { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let p: PetrelProcess | null = null;
  try {
    const dataDir = join(dir, "data");
    const config = await writeConfig(dir, { dataDir, listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }] });
    const killed = await servePetrel(config, 1);
    killed.kill("SIGKILL");
    await killed.exited;
    assert.equal((await readFile(join(dataDir, "petrel.pid"), "utf8")).trim(), String(killed.pid), "a stale pid file is left");
    p = await servePetrel(config, 1);
    assert.equal((await readFile(join(dataDir, "petrel.pid"), "utf8")).trim(), String(p.pid));
    await sendTo(p.port("mx"), "after a crash");
    assert.equal((await stopPetrel(p)).code, 0);
    p = null;
  } finally {
    if (p) await stopPetrel(p);
    SmtpClient.closeAll();
    await cleanup();
  }
});

test("offline petrel queue takes the same lock: refused (75) while another process holds it, works once it is free", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const dataDir = join(dir, "data");
    const config = await writeConfig(dir, { dataDir });
    const { mkdir } = await import("node:fs/promises");
    await mkdir(dataDir);
    const lock = await lockDataDir(dataDir);
    await lock.writePidFile();
    try {
      const q = runPetrel(["queue", "list", "--config", config]);
      const exit = await q.exited;
      assert.equal(exit.code, 75, q.stderr() + q.stdout());
      assert.ok(q.stderr().includes(`the data directory ${dataDir} is in use by another process (pid ${process.pid}`), q.stderr());
      assert.doesNotMatch(q.stdout(), /queue is empty/);
    } finally {
      await lock.release();
    }
    const q = runPetrel(["queue", "list", "--config", config]);
    assert.equal((await q.exited).code, 0, q.stderr());
    assert.match(q.stdout(), /Mail queue is empty/);
  } finally {
    await cleanup();
  }
});

test("two locks on one directory exclude each other within one process too (flock is per open file), and release frees it", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const a = await lockDataDir(dir);
    await assert.rejects(lockDataDir(dir), (err: Error) => err.name === "DataDirInUse");
    await a.release();
    const b = await lockDataDir(dir);
    await b.release();
  } finally {
    await cleanup();
  }
});
