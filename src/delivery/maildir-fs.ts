import { chmod, chown, open, mkdir, rename, unlink, readdir, stat } from "node:fs/promises";

/** The file-system calls a Maildir delivery makes; injectable so tests can fail any of them. */
export interface MaildirFs {
  /** mkdir -p with this mode; resolves to the first directory created, or undefined if all existed. */
  mkdirp(path: string, mode: number): Promise<string | undefined>;
  /** Create a new file exclusively (O_CREAT | O_EXCL | O_WRONLY), mode 0600. */
  createExclusive(path: string): Promise<MaildirFile>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  stat(path: string): Promise<{ size: number; mtimeMs: number }>;
  /** fsync a directory so the entries created or renamed in it are durable. */
  syncDir(path: string): Promise<void>;
  /** chown(2); -1 leaves that id unchanged. */
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** chmod(2), for modes the umask would otherwise cut. */
  chmod(path: string, mode: number): Promise<void>;
}

export interface MaildirFile {
  /** Write all of `data` in order: one writev(2) for the lot, looping over short writes. */
  write(data: readonly Buffer[]): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export const nodeMaildirFs: MaildirFs = {
  async mkdirp(path, mode) {
    return mkdir(path, { recursive: true, mode });
  },
  async createExclusive(path) {
    const h = await open(path, "wx", 0o600);
    return {
      async write(data) {
        let rest = data.filter((b) => b.length > 0);
        while (rest.length > 0) {
          const { bytesWritten } = await h.writev(rest);
          rest = afterWritten(rest, bytesWritten);
        }
      },
      sync: () => h.sync(),
      close: () => h.close(),
    };
  },
  rename: (from, to) => rename(from, to),
  unlink: (path) => unlink(path),
  readdir: (path) => readdir(path),
  async stat(path) {
    const s = await stat(path);
    return { size: s.size, mtimeMs: s.mtimeMs };
  },
  async syncDir(path) {
    const h = await open(path, "r");
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  },
  chown: (path, uid, gid) => chown(path, uid, gid),
  chmod: (path, mode) => chmod(path, mode),
};

/** What is left of `buffers` once their first `n` bytes are written (a short writev). */
export function afterWritten(buffers: readonly Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < buffers.length && n >= buffers[i].length) n -= buffers[i++].length;
  if (i === buffers.length) return [];
  return [buffers[i].subarray(n), ...buffers.slice(i + 1)];
}
