/**
 * One message being written into the journal spool. A small body is kept in
 * memory until commit (the chunks as given: the intake hands over batches of
 * up to 64 KiB, each a buffer of its own or a view of one socket read, so a
 * kept chunk never holds more than 64 KiB beyond itself) and goes into the
 * journal record itself; once it would
 * pass the inline limit (or the spool-wide inline memory budget is spent) it
 * spills into its own file large/<id>, streamed without fsync until commit,
 * when that one file is fsync'd and the record only references it. The
 * lifecycle is WriterLifecycle's.
 */
import { join } from "node:path";
import type { Envelope } from "../mail/envelope.ts";
import { encodeEnvelope, type JournalFileHandle, type JournalFs } from "./journal-record.ts";
import { writeAll } from "./spool-file.ts";
import { SpoolError, type QueueId } from "./spool.ts";
import { WriterLifecycle } from "./writer-lifecycle.ts";

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

export class JournalSpoolWriter extends WriterLifecycle {
  private readonly host: JournalWriterHost;
  /** Inline body, while not spilled. */
  private chunks: Buffer[] = [];
  /** Bytes of the inline budget this writer holds. */
  private reserved = 0;
  private spill: Spill | null = null;

  constructor(host: JournalWriterHost, id: QueueId) {
    super(id);
    this.host = host;
  }

  protected take(chunk: Buffer): void {
    if (this.spill === null) {
      if (this.bodyLength <= this.host.inlineLimit && this.host.reserveInline(chunk.length)) {
        this.chunks.push(chunk);
        this.reserved += chunk.length;
        return;
      }
      const spill: Spill = {
        fh: null, path: join(this.host.largeDir, this.id), written: 0, dirSynced: null, gathered: [], gatheredBytes: 0,
      };
      this.spill = spill;
      const buffers = this.chunks;
      this.chunks = [];
      buffers.push(chunk);
      this.tail = this.tail.then(() => this.startSpill(spill, buffers));
      return;
    }
    const spill = this.spill;
    if (spill.gatheredBytes + chunk.length < SPILL_BUFFER) {
      spill.gathered.push(chunk);
      spill.gatheredBytes += chunk.length;
    } else {
      const buffers = spill.gathered;
      buffers.push(chunk);
      spill.gathered = [];
      spill.gatheredBytes = 0;
      this.tail = this.tail.then(() => this.flush(spill, buffers));
    }
  }

  private async startSpill(spill: Spill, buffers: Buffer[]): Promise<void> {
    if (this.stopped) return;
    let opened = false;
    await this.attempt("cannot create body file for", async () => {
      spill.fh = await this.host.fs.open(spill.path, "wx", FILE_MODE);
      opened = true;
      if (this.host.syncEnabled) {
        // The new directory entry must be durable before a record references it;
        // start that now, off the commit path.
        spill.dirSynced = this.host.largeDirSync();
        spill.dirSynced.catch(() => {});
      }
    });
    if (!opened) return;
    await this.flush(spill, buffers);
    this.host.releaseInline(this.reserved);
    this.reserved = 0;
  }

  private async flush(spill: Spill, buffers: Buffer[]): Promise<void> {
    if (this.stopped || spill.fh === null) return;
    const fh = spill.fh;
    let total = 0;
    for (const b of buffers) total += b.length;
    await this.attempt("cannot write", async () => {
      await writeAll(fh, buffers, spill.written);
      spill.written += total;
    });
  }

  protected async persist(envelope: Envelope): Promise<void> {
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
  }

  protected async cleanup(committed: boolean): Promise<void> {
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

  protected trackCommit(p: Promise<void>): void {
    this.host.trackCommit(p);
  }
}
