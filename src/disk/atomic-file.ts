/**
 * Replacing a small file so that a crash at any instant leaves the old content or the new,
 * whole: write a temporary file beside it (mode 0600 whatever the umask), fsync it, rename it
 * over the file, fsync the directory.
 */
import { open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

export async function writeAtomically(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.chmod(0o600);
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
