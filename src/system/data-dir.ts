/**
 * The data directory before anything is opened in it.
 *
 * - Its path is checked first: every existing ancestor must be a directory,
 *   and the directory must be on a real file system, not a kernel pseudo file
 *   system such as /proc or /sys (where mkdir fails with ENOENT forever and a
 *   recursive mkdir never ends).
 * - Missing directories are created one level at a time (a bounded loop),
 *   the data directory itself mode 0711: only its owner lists or changes it,
 *   while a mail server such as Dovecot, running as another user, can still
 *   reach `mail/`. When Petrel is about to switch to `user:`, what it created
 *   is given to that user.
 * - Once Petrel runs as its final user, the directory and what is already in
 *   it must be writable by that user (a data directory left by an earlier run
 *   as root is the usual surprise).
 *
 * Every problem is a configuration error on `dataDir`, with the file and line.
 */
import { access, chown, constants, lstat, mkdir, readdir, stat, statfs } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Config } from "../config/schema.ts";
import { configIssue, startupConfigError } from "../config/load.ts";
import type { ConfigError } from "../config/config-error.ts";

/** statfs(2) f_type of file systems that hold no files of their own (linux/magic.h). */
const PSEUDO_FILE_SYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x73636673, "securityfs"],
  [0x1cd1, "devpts"],
  [0xcafe4a11, "bpf"],
  [0x6165676c, "pstore"],
  [0x62656570, "configfs"],
  [0xde5e81e4, "efivarfs"],
  [0x19800202, "mqueue"],
]);

/** Directory levels created at most (a path deeper than this is refused, not looped over). */
const MAX_LEVELS = 64;

function problem(config: Config, allowed: string): ConfigError {
  return startupConfigError(config, [configIssue(config, ["dataDir"], config.dataDir, allowed)]);
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Check the data directory's path and create what is missing; give what was
 * created to `owner` (the user Petrel switches to). Returns the directories
 * created, parent first.
 */
export async function prepareDataDir(config: Config, owner?: { uid: number; gid: number }): Promise<string[]> {
  const dir = config.dataDir;
  const missing: string[] = [];
  let existing = dir;
  for (;;) {
    let st;
    try {
      st = await stat(existing);
    } catch (err) {
      const code = errCode(err);
      if ((code === "ENOENT" || code === "ENOTDIR") && dirname(existing) !== existing && missing.length < MAX_LEVELS) {
        missing.unshift(existing);
        existing = dirname(existing);
        continue;
      }
      if (code === "EACCES") throw problem(config, `expected a directory Petrel can reach: permission denied on ${existing}`);
      throw problem(config, `expected a directory Petrel can create: ${existing}: ${code ?? (err as Error).message}`);
    }
    if (!st.isDirectory()) {
      const what = st.isFile() ? "a regular file" : "not a directory";
      throw problem(config, existing === dir
        ? `expected a directory: ${dir} is ${what}`
        : `expected a directory Petrel can create: ${existing}, on its path, is ${what}`);
    }
    break;
  }
  const fsType = PSEUDO_FILE_SYSTEMS.get(Number((await statfs(existing)).type));
  if (fsType !== undefined) {
    throw problem(config, `expected a directory on a disk (such as /var/lib/petrel): ${existing} is on a ${fsType} file system, which the kernel makes up and which stores no files`);
  }
  for (const d of missing) {
    try {
      await mkdir(d, { mode: d === dir ? 0o711 : 0o755 });
    } catch (err) {
      if (errCode(err) === "EEXIST" && (await lstat(d)).isDirectory()) continue;
      const code = errCode(err);
      const why = code === "EACCES" ? "permission denied" : code === "EROFS" ? "read-only file system" : code ?? (err as Error).message;
      throw problem(config, `expected a directory Petrel can create: cannot create ${d} (${why})`);
    }
    if (owner) await chown(d, owner.uid, owner.gid);
  }
  return missing;
}

/**
 * As the user Petrel runs as from now on: the data directory and every entry
 * already at its top level must be writable (and the directories searchable).
 */
export async function checkDataDirWritable(config: Config): Promise<void> {
  const dir = config.dataDir;
  const blocked: string[] = [];
  let readOnly = false;
  const check = async (path: string, isDir: boolean) => {
    try {
      await access(path, constants.W_OK | (isDir ? constants.X_OK : 0));
    } catch (err) {
      if (errCode(err) === "EROFS") readOnly = true;
      if (errCode(err) !== "ENOENT") blocked.push(path);
    }
  };
  await check(dir, true);
  if (blocked.length === 0) {
    for (const name of await readdir(dir)) {
      const st = await lstat(join(dir, name)).catch(() => undefined);
      if (st && !st.isSymbolicLink()) await check(join(dir, name), st.isDirectory());
    }
  }
  if (blocked.length === 0) return;
  const who = `uid ${process.getuid!()}, gid ${process.getgid!()}`;
  if (readOnly) {
    throw problem(config, `expected a writable directory: ${blocked.join(", ")} is on a read-only file system (systemd: list it in ReadWritePaths=)`);
  }
  throw problem(config, `expected a directory the user Petrel runs as (${who}) can write: not writable: ${blocked.join(", ")} ` +
    `(as root: chown -R ${process.getuid!()}:${process.getgid!()} ${dir})`);
}

/** Give `paths` (that exist) to `owner`: files Petrel made as root before switching users. */
export async function handOver(paths: readonly string[], owner: { uid: number; gid: number }): Promise<void> {
  for (const p of paths) {
    try {
      await chown(p, owner.uid, owner.gid);
    } catch (err) {
      if (errCode(err) !== "ENOENT") throw err;
    }
  }
}

/** Whether `path` names a directory (for callers that only want to know). */
export async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}
