/**
 * One message being written into the file spool: gathers small writes,
 * streams large ones to tmp/<id>, and runs the commit protocol described at
 * the top of file-spool.ts (trailer + footer, fsync, close, rename, shared
 * directory fsync). The lifecycle is WriterLifecycle's.
 */
import type { Envelope } from "../mail/envelope.ts";
import { encodeTrailer, writeAll, type SpoolFileHandle, type SpoolFs } from "./spool-file.ts";
import type { QueueId } from "./spool.ts";
import { WriterLifecycle } from "./writer-lifecycle.ts";

/** Body bytes gathered in memory per message before they are written. */
const WRITE_BUFFER = 16 * 1024;

/** What a writer needs from the spool that made it. */
export interface WriterHost {
  readonly fsOps: SpoolFs;
  readonly syncEnabled: boolean;
  /** Resolves when renames and unlinks in queue/ done so far are durable (group commit). */
  dirSync(): Promise<void>;
  trackCommit(p: Promise<void>): void;
  writerDone(writer: FileSpoolWriter, committed: boolean): void;
  countFileSync(): void;
}

export class FileSpoolWriter extends WriterLifecycle {
  private readonly spool: WriterHost;
  private readonly fh: SpoolFileHandle;
  private readonly tmpPath: string;
  private readonly queuePath: string;
  private fhClosed = false;
  /** Body bytes already written to the file. */
  private written = 0;
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;

  constructor(spool: WriterHost, id: QueueId, fh: SpoolFileHandle, tmpPath: string, queuePath: string) {
    super(id);
    this.spool = spool;
    this.fh = fh;
    this.tmpPath = tmpPath;
    this.queuePath = queuePath;
  }

  protected take(chunk: Buffer): void {
    if (this.gatheredBytes + chunk.length < WRITE_BUFFER) {
      this.gathered.push(chunk);
      this.gatheredBytes += chunk.length;
      return;
    }
    const buffers = this.gathered;
    buffers.push(chunk);
    this.gathered = [];
    this.gatheredBytes = 0;
    this.tail = this.tail.then(() => this.flush(buffers));
  }

  private async flush(buffers: Buffer[]): Promise<void> {
    if (this.stopped) return;
    let total = 0;
    for (const b of buffers) total += b.length;
    await this.attempt("cannot write", async () => {
      await writeAll(this.fh, buffers, this.written);
      this.written += total;
    });
  }

  protected async persist(envelope: Envelope): Promise<void> {
    const fs = this.spool.fsOps;
    const buffers = this.gathered;
    this.gathered = [];
    buffers.push(...encodeTrailer(envelope, this.bodyLength, this.bodyCrc));
    await writeAll(this.fh, buffers, this.written);
    if (this.spool.syncEnabled) {
      await this.fh.sync();
      this.spool.countFileSync();
    }
    this.fhClosed = true;
    await this.fh.close();
    await fs.rename(this.tmpPath, this.queuePath);
    try {
      await this.spool.dirSync();
    } catch (err) {
      // The rename may not be durable and the caller will report failure:
      // take the message back rather than keep one the client will resend.
      await fs.unlink(this.queuePath).catch(() => {});
      throw err;
    }
  }

  protected async cleanup(committed: boolean): Promise<void> {
    if (!this.fhClosed) {
      this.fhClosed = true;
      await this.fh.close().catch(() => {});
    }
    if (!committed) await this.spool.fsOps.unlink(this.tmpPath).catch(() => {});
    this.gathered = [];
    this.spool.writerDone(this, committed);
  }

  protected trackCommit(p: Promise<void>): void {
    this.spool.trackCommit(p);
  }
}
