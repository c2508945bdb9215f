/**
 * An exclusive lock between processes (a running server and `petrel` CLI commands) made of a file
 * created with O_EXCL that holds the owner's pid. It guards short read-modify-write sections only
 * (milliseconds), so waiting is a poll with a small random backoff.
 *
 * Stale locks: when the pid in the file is no longer alive (the owner crashed), the lock is taken
 * over. The take-over renames the lock file to a unique name and checks it is still the file judged
 * stale (same inode) before deleting it; if another process replaced it meanwhile, the rename is
 * undone with link(). The one race left needs three processes breaking the same stale lock at the
 * same instant — accepted. A lock file that is still empty (its owner between create and write) is
 * only judged stale after EMPTY_LOCK_GRACE_MS.
 */
import { randomBytes } from "node:crypto";
import { link, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { AccountError } from "./account-store.ts";
import { processRuns } from "../disk/process-runs.ts";

const EMPTY_LOCK_GRACE_MS = 5000;

/** Inodes of lock files this process holds, so a lock with our own pid is known to be live. */
const heldHere = new Set<string>();
/** Lock paths this process is creating right now (between open and `heldHere.add`). */
const creatingHere = new Map<string, number>();

interface Holder {
  pid: number | null;
  ino: number;
  dev: number;
  mtimeMs: number;
}

async function inspect(path: string): Promise<Holder | null> {
  try {
    const [st, text] = await Promise.all([stat(path), readFile(path, "utf8")]);
    const m = /^(\d+)\s*$/.exec(text);
    return { pid: m ? Number(m[1]) : null, ino: st.ino, dev: st.dev, mtimeMs: st.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

function isStale(path: string, h: Holder): boolean {
  if (h.pid === null) return Date.now() - h.mtimeMs > EMPTY_LOCK_GRACE_MS;
  // Our own pid: live if another holder in this process has (or is just taking) it; else it was
  // left by an earlier process that had the same pid.
  if (h.pid === process.pid) return !heldHere.has(`${h.dev}:${h.ino}`) && !creatingHere.get(path);
  return !processRuns(h.pid);
}

async function breakStale(path: string, h: Holder): Promise<void> {
  const aside = `${path}.stale.${process.pid}.${randomBytes(4).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // someone else broke it
    throw err;
  }
  const st = await stat(aside);
  if (st.ino !== h.ino || st.dev !== h.dev) {
    // We moved a fresh lock that replaced the stale one: put it back.
    await link(aside, path).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

/** Create the lock file with O_EXCL; null when it exists already. */
async function tryCreate(path: string): Promise<(() => Promise<void>) | null> {
  creatingHere.set(path, (creatingHere.get(path) ?? 0) + 1);
  let id: string;
  try {
    let fh;
    try {
      fh = await open(path, "wx", 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return null;
      throw err;
    }
    try {
      await fh.writeFile(`${process.pid}\n`);
      const st = await fh.stat();
      id = `${st.dev}:${st.ino}`;
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
      throw err;
    }
    await fh.close();
    heldHere.add(id);
  } finally {
    creatingHere.set(path, creatingHere.get(path)! - 1);
  }
  return async () => {
    try {
      const st = await stat(path);
      if (`${st.dev}:${st.ino}` === id) await unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    } finally {
      heldHere.delete(id);
    }
  };
}

export interface LockOptions {
  /** Give up after this many ms (AccountError "locked"). Default 10 s. */
  readonly timeout?: number;
}

/** Take the lock at `path`; resolves a function that releases it. */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<() => Promise<void>> {
  const deadline = Date.now() + (options.timeout ?? 10_000);
  let wait = 2;
  for (;;) {
    const release = await tryCreate(path);
    if (release) return release;
    const holder = await inspect(path);
    if (holder === null) continue;
    if (isStale(path, holder)) {
      await breakStale(path, holder);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new AccountError(
        "locked",
        `the accounts are locked by process ${holder.pid ?? "(unknown)"} (${path}); if no petrel command is running, remove that file`,
      );
    }
    await new Promise((r) => setTimeout(r, wait + Math.random() * wait));
    wait = Math.min(wait * 2, 50);
  }
}
