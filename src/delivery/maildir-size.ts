/**
 * The size of a Maildir for its quota: the S= sizes of the message file
 * names (Dovecot's convention), cached per directory while it is unchanged.
 */
import { join } from "node:path";
import type { MaildirFs } from "./maildir-fs.ts";

interface DirSizeCache {
  readonly mtimeMs: number;
  readonly scannedAt: number;
  readonly size: number;
}

/** Per directory (cur/, new/): the summed message sizes, valid while the directory is unchanged. */
const sizeCache = new Map<string, DirSizeCache>();
/** Directory timestamps are coarse (a kernel tick, or a second on some file systems): a directory modified this recently is rescanned. */
const MTIME_SLACK_MS = 2000;
const SIZE_FIELD = /,S=(\d+)/;

/**
 * The mailbox size: the S= sizes of every message in cur/ and new/ of the
 * Maildir and of its Maildir++ folders (".Sent", ...). Names without S= are
 * stat'ed. Per-directory sums are cached and reused while the directory's
 * mtime is unchanged (and old enough to be trusted).
 */
export async function maildirSize(fs: MaildirFs, dir: string): Promise<number> {
  const dirs = [join(dir, "cur"), join(dir, "new")];
  for (const name of await fs.readdir(dir)) {
    if (name.startsWith(".") && name !== "." && name !== "..") dirs.push(join(dir, name, "cur"), join(dir, name, "new"));
  }
  let total = 0;
  for (const d of dirs) total += await dirSize(fs, d);
  return total;
}

async function dirSize(fs: MaildirFs, d: string): Promise<number> {
  let st: { mtimeMs: number };
  try {
    st = await fs.stat(d);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return 0;
    throw err;
  }
  const cached = sizeCache.get(d);
  if (cached && cached.mtimeMs === st.mtimeMs && cached.mtimeMs < cached.scannedAt - MTIME_SLACK_MS) return cached.size;
  const scannedAt = Date.now();
  let size = 0;
  for (const name of await fs.readdir(d)) {
    if (name.startsWith(".")) continue;
    const m = SIZE_FIELD.exec(name.split(":")[0]);
    if (m) {
      size += Number(m[1]);
      continue;
    }
    try {
      size += (await fs.stat(join(d, name))).size;
    } catch {
      // Moved or expunged meanwhile.
    }
  }
  sizeCache.set(d, { mtimeMs: st.mtimeMs, scannedAt, size });
  return size;
}
