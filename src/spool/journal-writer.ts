/**
 * One message being written into the journal spool. A small body is kept in
 * memory until commit and goes into the journal record itself; once it would
 * pass the inline limit (or the spool-wide inline memory budget is spent) it
 * spills into its own file large/<id>, streamed without fsync until commit,
 * when that one file is fsync'd and the record only references it.
 */
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { Envelope } from "../mail/envelope.ts";
import { toSpoolError } from "./file-spool-writer.ts";
import { encodeEnvelope, type JournalFileHandle, type JournalFs } from "./journal-record.ts";
import { writeAll } from "./spool-file.ts";
import { SpoolError, type QueueId, type SpoolWriter } from "./spool.ts";

/** Body bytes of a spilled message gathered in memory before a file write. */
const SPILL_BUFFER = 64 * 1024;
const FILE_MODE = 0o600;

export interface CommitBody {
  /** The body when it goes into the record; null when it is in large/<id>. */
  readonly inline: Buffer[] | null;
  readonly length: number;
  readonly crc: number;
}

/** What a writer needs from the spool that made it. */
export interface JournalWriterHost {
  readonly fs: JournalFs;
  readonly syncEnabled: boolean;
  readonly largeDir: string;
  /** Largest body kept in memory and written inline. */
  readonly inlineLimit: number;
  /** Take `n` bytes from the spool-wide inline budget; false when it is spent. */
  reserveInline(n: number): boolean;
  releaseInline(n: number): void;
  /** Resolves once entries created in large/ so far are durable (shared fsync). */
  largeDirSync(): Promise<void>;
  /** Append the message record; resolves once it is durable and listed. */
  commitRecord(id: QueueId, envelopeJson: Buffer, body: CommitBody): Promise<void>;
  trackCommit(p: Promise<void>): void;
  writerDone(writer: JournalSpoolWriter, committed: boolean): void;
  countFileSync(): void;
}

interface Spill {
  fh: JournalFileHandle | null;
  readonly path: string;
  written: number;
  /** The directory entry of large/<id> is durable. */
  dirSynced: Promise<void> | null;
  gathered: Buffer[];
  gatheredBytes: number;
}

export class JournalSpoolWriter implements SpoolWriter {
  readonly id: QueueId;
  private readonly host: JournalWriterHost;
  private state: "open" | "committing" | "committed" | "aborted" | "failed" = "open";
  private error: SpoolError | null = null;
  private bodyLength = 0;
  private bodyCrc = 0;
  /** Inline body (copies), while not spilled. */
  private chunks: Buffer[] = [];
  /** Bytes of the inline budget this writer holds. */
  private reserved = 0;
  private spill: Spill | null = null;
  /** The chain of file operations; never rejects (failures land in `error`). */
  private tail: Promise<void> = Promise.resolve();
  private commitPromise: Promise<void> | null = null;
  private abortPromise: Promise<void> | null = null;
  private cleanupPromise: Promise<void> | null = null;

  constructor(host: JournalWriterHost, id: QueueId) {
    this.host = host;
    this.id = id;
  }

  private unusable(): SpoolError {
    return this.error ?? new SpoolError(`message ${this.id} is ${this.state}`, { code: "ECLOSED" });
  }

  private check(): void {
    if (this.error !== null) throw this.error;
  }

  /** The caller must not change `chunk` until the returned promise settles. */
  write(chunk: Buffer): Promise<void> {
    if (this.state !== "open") return Promise.reject(this.unusable());
    if (chunk.length === 0) return this.tail.then(() => this.check());
    this.bodyCrc = crc32(chunk, this.bodyCrc);
    this.bodyLength += chunk.length;
    if (this.spill === null) {
      if (this.bodyLength <= this.host.inlineLimit && this.host.reserveInline(chunk.length)) {
        this.chunks.push(Buffer.from(chunk));
        this.reserved += chunk.length;
        return this.tail.then(() => this.check());
      }
      const spill: Spill = {
        fh: null, path: join(this.host.largeDir, this.id), written: 0, dirSynced: null, gathered: [], gatheredBytes: 0,
      };
      this.spill = spill;
      const buffers = this.chunks;
      this.chunks = [];
      buffers.push(chunk);
      this.tail = this.tail.then(() => this.startSpill(spill, buffers));
      return this.tail.then(() => this.check());
    }
    const spill = this.spill;
    if (spill.gatheredBytes + chunk.length < SPILL_BUFFER) {
      spill.gathered.push(Buffer.from(chunk));
      spill.gatheredBytes += chunk.length;
    } else {
      const buffers = spill.gathered;
      buffers.push(chunk);
      spill.gathered = [];
      spill.gatheredBytes = 0;
      this.tail = this.tail.then(() => this.flush(spill, buffers));
    }
    return this.tail.then(() => this.check());
  }

  private async startSpill(spill: Spill, buffers: Buffer[]): Promise<void> {
    if (this.error !== null || this.state === "aborted") return;
    try {
      spill.fh = await this.host.fs.open(spill.path, "wx", FILE_MODE);
      if (this.host.syncEnabled) {
        // The new directory entry must be durable before a record references it;
        // start that now, off the commit path.
        spill.dirSynced = this.host.largeDirSync();
        spill.dirSynced.catch(() => {});
      }
    } catch (err) {
      await this.fail(toSpoolError(`cannot create body file for ${this.id}`, err));
      return;
    }
    await this.flush(spill, buffers);
    this.host.releaseInline(this.reserved);
    this.reserved = 0;
  }

  private async flush(spill: Spill, buffers: Buffer[]): Promise<void> {
    if (this.error !== null || this.state === "aborted" || spill.fh === null) return;
    let total = 0;
    for (const b of buffers) total += b.length;
    try {
      await writeAll(spill.fh, buffers, spill.written);
      spill.written += total;
    } catch (err) {
      await this.fail(toSpoolError(`cannot write ${this.id}`, err));
    }
  }

  /** Record the failure and remove the body file (once). */
  private fail(error: SpoolError): Promise<void> {
    if (this.error === null) this.error = error;
    this.state = "failed";
    if (this.cleanupPromise === null) this.cleanupPromise = this.cleanup(false);
    return this.cleanupPromise;
  }

  private async cleanup(committed: boolean): Promise<void> {
    const spill = this.spill;
    if (spill !== null) {
      const fh = spill.fh;
      spill.fh = null;
      await fh?.close().catch(() => {});
      if (!committed) await this.host.fs.unlink(spill.path).catch(() => {});
      spill.gathered = [];
    }
    this.chunks = [];
    this.host.releaseInline(this.reserved);
    this.reserved = 0;
    this.host.writerDone(this, committed);
  }

  commit(envelope: Envelope): Promise<void> {
    if (this.state !== "open") return Promise.reject(this.unusable());
    this.state = "committing";
    this.commitPromise = this.doCommit(envelope);
    this.host.trackCommit(this.commitPromise);
    return this.commitPromise;
  }

  private async doCommit(envelope: Envelope): Promise<void> {
    await this.tail;
    this.check();
    try {
      const json = encodeEnvelope(envelope);
      const spill = this.spill;
      let body: CommitBody;
      if (spill === null) {
        body = { inline: this.chunks, length: this.bodyLength, crc: this.bodyCrc };
      } else {
        const fh = spill.fh;
        if (fh === null) throw new SpoolError(`body file of ${this.id} is closed`, { code: "EIO" });
        await writeAll(fh, spill.gathered, spill.written);
        spill.gathered = [];
        if (this.host.syncEnabled) {
          await fh.sync();
          this.host.countFileSync();
        }
        spill.fh = null;
        await fh.close();
        await spill.dirSynced;
        body = { inline: null, length: this.bodyLength, crc: this.bodyCrc };
      }
      await this.host.commitRecord(this.id, json, body);
    } catch (err) {
      await this.fail(toSpoolError(`cannot commit ${this.id}`, err));
      throw this.error;
    }
    this.state = "committed";
    this.chunks = [];
    this.host.releaseInline(this.reserved);
    this.reserved = 0;
    this.host.writerDone(this, true);
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
