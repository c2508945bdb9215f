/**
 * One message being written into the file spool: gathers small writes,
 * streams large ones to tmp/<id>, and runs the commit protocol described at
 * the top of file-spool.ts (trailer + footer, fsync, close, rename, shared
 * directory fsync).
 */
import { crc32 } from "node:zlib";
import type { Envelope } from "../mail/envelope.ts";
import { encodeTrailer, writeAll, type SpoolFileHandle, type SpoolFs } from "./spool-file.ts";
import { SpoolError, type QueueId, type SpoolWriter } from "./spool.ts";

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

export function toSpoolError(what: string, err: unknown): SpoolError {
  if (err instanceof SpoolError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return new SpoolError(`${what}: ${message}`, { cause: err, code: typeof code === "string" ? code : undefined });
}

export class FileSpoolWriter implements SpoolWriter {
  readonly id: QueueId;
  private readonly spool: WriterHost;
  private readonly fh: SpoolFileHandle;
  private readonly tmpPath: string;
  private readonly queuePath: string;
  private state: "open" | "committing" | "committed" | "aborted" | "failed" = "open";
  private error: SpoolError | null = null;
  private fhClosed = false;
  /** Body bytes accepted so far (written + gathered). */
  private bodyLength = 0;
  /** Body bytes already written to the file. */
  private written = 0;
  private bodyCrc = 0;
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;
  /** The chain of file writes; never rejects (failures land in `error`). */
  private tail: Promise<void> = Promise.resolve();
  private commitPromise: Promise<void> | null = null;
  private abortPromise: Promise<void> | null = null;
  private cleanupPromise: Promise<void> | null = null;

  constructor(spool: WriterHost, id: QueueId, fh: SpoolFileHandle, tmpPath: string, queuePath: string) {
    this.spool = spool;
    this.id = id;
    this.fh = fh;
    this.tmpPath = tmpPath;
    this.queuePath = queuePath;
  }

  private unusable(): SpoolError {
    return this.error ?? new SpoolError(`message ${this.id} is ${this.state}`, { code: "ECLOSED" });
  }

  /** The caller must not change `chunk` until the returned promise settles. */
  write(chunk: Buffer): Promise<void> {
    if (this.state !== "open") return Promise.reject(this.unusable());
    if (chunk.length === 0) return this.tail.then(() => this.check());
    this.bodyCrc = crc32(chunk, this.bodyCrc);
    this.bodyLength += chunk.length;
    if (this.gatheredBytes + chunk.length < WRITE_BUFFER) {
      this.gathered.push(Buffer.from(chunk));
      this.gatheredBytes += chunk.length;
    } else {
      const buffers = this.gathered;
      buffers.push(chunk);
      this.gathered = [];
      this.gatheredBytes = 0;
      this.tail = this.tail.then(() => this.flush(buffers));
    }
    return this.tail.then(() => this.check());
  }

  private check(): void {
    if (this.error !== null) throw this.error;
  }

  private async flush(buffers: Buffer[]): Promise<void> {
    if (this.error !== null || this.state === "aborted") return;
    let total = 0;
    for (const b of buffers) total += b.length;
    try {
      await writeAll(this.fh, buffers, this.written);
      this.written += total;
    } catch (err) {
      await this.fail(toSpoolError(`cannot write ${this.id}`, err));
    }
  }

  /** Record the failure and remove the temporary file (once). */
  private fail(error: SpoolError): Promise<void> {
    if (this.error === null) this.error = error;
    this.state = "failed";
    if (this.cleanupPromise === null) this.cleanupPromise = this.cleanup(false);
    return this.cleanupPromise;
  }

  private async cleanup(committed: boolean): Promise<void> {
    if (!this.fhClosed) {
      this.fhClosed = true;
      await this.fh.close().catch(() => {});
    }
    if (!committed) await this.spool.fsOps.unlink(this.tmpPath).catch(() => {});
    this.gathered = [];
    this.spool.writerDone(this, committed);
  }

  commit(envelope: Envelope): Promise<void> {
    if (this.state !== "open") return Promise.reject(this.unusable());
    this.state = "committing";
    this.commitPromise = this.doCommit(envelope);
    this.spool.trackCommit(this.commitPromise);
    return this.commitPromise;
  }

  private async doCommit(envelope: Envelope): Promise<void> {
    await this.tail;
    this.check();
    const fs = this.spool.fsOps;
    try {
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
    } catch (err) {
      await this.fail(toSpoolError(`cannot commit ${this.id}`, err));
      throw this.error;
    }
    try {
      await this.spool.dirSync();
    } catch (err) {
      // The rename may not be durable and the caller will report failure:
      // take the message back rather than keep one the client will resend.
      await fs.unlink(this.queuePath).catch(() => {});
      this.error = toSpoolError(`cannot commit ${this.id}`, err);
      this.state = "failed";
      this.spool.writerDone(this, false);
      throw this.error;
    }
    this.state = "committed";
    this.spool.writerDone(this, true);
  }

  /**
   * Discard the message. Idempotent. Once commit() has been called, abort()
   * only waits for it to settle: a commit cannot be taken back halfway.
   */
  abort(): Promise<void> {
    if (this.commitPromise !== null) return this.commitPromise.then(() => {}, () => {});
    if (this.abortPromise !== null) return this.abortPromise;
    if (this.state === "failed") return this.cleanupPromise ?? Promise.resolve();
    this.state = "aborted";
    this.abortPromise = this.tail.then(() => {
      if (this.cleanupPromise === null) this.cleanupPromise = this.cleanup(false);
      return this.cleanupPromise;
    });
    return this.abortPromise;
  }
}
