import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Spool } from "./spool.ts";
import { FileSpool } from "./file-spool.ts";
import { JournalSpool } from "./journal-spool.ts";

/**
 * The spool a configuration asks for, in <dataDir>/spool:
 * - "files": one file per message (fsync, rename, group-committed directory fsync);
 * - "journal": records of many sessions appended to shared segments, one
 *   fdatasync per batch (group commit), large bodies in their own files.
 * Both keep the same promise: commit() resolves only once a message is on
 * stable storage.
 */
export type SpoolFormat = "files" | "journal";

export async function createSpool(dataDir: string, format: SpoolFormat, onWarning: (message: string) => void): Promise<Spool> {
  const dir = join(dataDir, "spool");
  // Messages queued in the other layout would be stranded: say so instead.
  const stranded = format === "journal" ? await queuedFiles(dir) : await queuedJournal(dir, onWarning);
  if (stranded > 0) {
    const other = format === "journal" ? "files" : "journal";
    throw new Error(
      `spool.format is "${format}" but ${dir} still holds ${stranded} queued message(s) in the "${other}" format; ` +
      `set spool.format back to "${other}" until the queue is empty (petrel queue list), then change it`,
    );
  }
  return format === "journal" ? new JournalSpool(dir, { onWarning }) : new FileSpool(dir, { onWarning });
}

async function queuedFiles(dir: string): Promise<number> {
  return (await readdir(join(dir, "queue")).catch(() => [] as string[])).filter((n) => !n.startsWith(".")).length;
}

async function queuedJournal(dir: string, onWarning: (message: string) => void): Promise<number> {
  const segments = await readdir(join(dir, "segments")).catch(() => [] as string[]);
  if (segments.length === 0) return 0;
  const journal = new JournalSpool(dir, { onWarning });
  await journal.open();
  try {
    return (await journal.list()).length;
  } finally {
    await journal.close();
  }
}
