/**
 * One owner of a data directory: the lock a running Petrel holds on it, so
 * that a second `petrel serve` (or an offline `petrel queue …`) never opens a
 * spool or queue state that a live process is using.
 *
 * The lock is flock(2) on the data directory itself (LOCK_EX, non-blocking).
 * Why flock, and how without a flock() in Node.js:
 * - The kernel releases it when the last descriptor of the open file goes
 *   away — when the process exits or is killed (SIGKILL, OOM): never a stale
 *   lock to clean up, unlike a pid file.
 * - It belongs to the directory's inode on its file system, so it holds
 *   whatever path names the directory (symlinks, bind mounts), and between
 *   processes in different network or pid namespaces (two containers sharing
 *   a volume) — which an abstract UNIX socket, scoped to a network namespace,
 *   would not.
 * - Node.js has no flock(), but a flock lock belongs to the open file
 *   description, not to the process that asked: Petrel opens the directory,
 *   passes that descriptor to flock(1) (util-linux, on every Linux system) as
 *   its fd 3, and flock(1) locks it and exits. The lock stays with Petrel's
 *   descriptor; Node.js opens files close-on-exec, so no other child process
 *   inherits it.
 * The holder's pid is written to `<dataDir>/petrel.pid` for people and for
 * the message a second start prints; the lock, not the file, decides.
 */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { open, readFile, rename, unlink, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";

export const PID_FILE = "petrel.pid";

/** The data directory is locked by another process. */
export class DataDirInUse extends Error {
  override readonly name = "DataDirInUse";
  readonly dir: string;
  /** The holder's pid, from petrel.pid, when it is there. */
  readonly pid: number | undefined;
  constructor(dir: string, pid: number | undefined) {
    super(`the data directory ${dir} is in use by another process${pid !== undefined ? ` (pid ${pid}, see ${join(dir, PID_FILE)})` : ""}`);
    this.dir = dir;
    this.pid = pid;
  }
}

export interface DataDirLock {
  readonly dir: string;
  /** Write `<dir>/petrel.pid` with this process's pid (removed again by release). */
  writePidFile(): Promise<void>;
  /** Remove the pid file if it is ours, and let go of the lock. */
  release(): Promise<void>;
}

/** Take the lock on `dir` (an existing directory) or throw DataDirInUse at once. */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  let status: number;
  try {
    status = await flockFd(handle);
  } catch (err) {
    await handle.close();
    throw err;
  }
  if (status !== 0) {
    await handle.close();
    throw new DataDirInUse(dir, await readPid(dir));
  }
  const pidPath = join(dir, PID_FILE);
  let wrotePid = false;
  let released: Promise<void> | null = null;
  return {
    dir,
    async writePidFile() {
      const tmp = `${pidPath}.${process.pid}.tmp`;
      await writeFile(tmp, `${process.pid}\n`, { mode: 0o644 });
      await rename(tmp, pidPath);
      wrotePid = true;
    },
    release() {
      released ??= (async () => {
        if (wrotePid && (await readPid(dir)) === process.pid) await unlink(pidPath).catch(() => {});
        await handle.close();
      })();
      return released;
    },
  };
}

/** The pid in `<dir>/petrel.pid`, if it holds one. */
export async function readPid(dir: string): Promise<number | undefined> {
  try {
    const m = /^(\d+)\s*$/.exec(await readFile(join(dir, PID_FILE), "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** flock(1) on our descriptor: 0 when locked, 1 when another holds it. */
function flockFd(handle: FileHandle): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn("flock", ["-x", "-n", "3"], { stdio: ["ignore", "ignore", "pipe", handle.fd] });
    let stderr = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => (stderr += d));
    child.once("error", (err: NodeJS.ErrnoException) => {
      reject(err.code === "ENOENT" ? new Error("flock(1) is missing: it comes with util-linux (Debian: apt-get install util-linux)") : err);
    });
    child.once("close", (code) => {
      if (code === 0 || code === 1) resolve(code);
      else reject(new Error(`flock(1) could not lock the data directory (exit ${code}): ${stderr.trim()}`));
    });
  });
}
