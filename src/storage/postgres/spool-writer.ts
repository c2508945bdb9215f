/**
 * A message being written to the PostgreSQL spool. The body streams into spool_chunk rows as the
 * DATA arrives, so a large message never sits whole in memory: bytes gather until a chunk is full
 * (or the spool-wide budget for gathered bytes is spent), then go out as one row in a transaction
 * of their own with synchronous_commit off — no WAL flush each; the commit's flush covers them,
 * since WAL is flushed in order. The first row registers the writer in spool_writer, so that the
 * rows of a writer that never commits (aborted while the database was away, its node killed) are
 * found and removed later (spool.ts, sweep). Whatever is left at commit — the whole body
 * of a small message — rides in the group-committed transaction with the envelope.
 */
import type { Envelope } from "../../mail/envelope.ts";
import { withClient, type PostgresPool } from "./postgres-pool.ts";
import { encodeEnvelope } from "../../spool/journal-record.ts";
import type { CommitRequest } from "./spool-commit.ts";
import type { QueueId } from "../../spool/spool.ts";
import { WriterLifecycle } from "../../spool/writer-lifecycle.ts";

/** What a writer needs from the spool that made it. */
export interface PostgresWriterHost {
  readonly pool: PostgresPool;
  readonly node: string;
  /** Bytes gathered before a chunk row is written. */
  readonly chunkSize: number;
  /** Take `n` bytes of the spool-wide budget for gathered bytes; false when it is spent (write what is held now). */
  reserve(n: number): boolean;
  release(n: number): void;
  /** Group-committed: resolves once the envelope and the body are durable. */
  commitMessage(request: CommitRequest): Promise<void>;
  trackCommit(p: Promise<void>): void;
  writerDone(writer: PostgresSpoolWriter, committed: boolean): void;
}

export class PostgresSpoolWriter extends WriterLifecycle {
  private readonly host: PostgresWriterHost;
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Bytes of the budget this writer holds. */
  private reserved = 0;
  /** Chunk rows written so far (the next row's seq). */
  private written = 0;
  /** Rows queued on `tail` but not yet written. */
  private queued = 0;

  constructor(host: PostgresWriterHost, id: QueueId) {
    super(id);
    this.host = host;
  }

  /** The rows written, for tests. */
  get chunkRows(): number {
    return this.written;
  }

  protected take(chunk: Buffer): void {
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.host.reserve(chunk.length)) this.reserved += chunk.length;
    else this.queueRow();
    if (this.heldBytes >= this.host.chunkSize) this.queueRow();
  }

  /** Hand what is held to the chain as the next row. */
  private queueRow(): void {
    if (this.heldBytes === 0) return;
    const bytes = this.held.length === 1 ? this.held[0] : Buffer.concat(this.held, this.heldBytes);
    const reserved = this.reserved;
    this.held = [];
    this.heldBytes = 0;
    this.reserved = 0;
    const seq = this.written + this.queued++;
    this.tail = this.tail.then(async () => {
      try {
        if (!this.stopped) await this.attempt("cannot store body of", () => this.insertRow(seq, bytes));
      } finally {
        this.queued--;
        this.host.release(reserved);
      }
    });
  }

  private insertRow(seq: number, bytes: Buffer): Promise<void> {
    return withClient(this.host.pool, async (client) => {
      await client.query("BEGIN; SET LOCAL synchronous_commit TO off");
      if (seq === 0) {
        await client.query("INSERT INTO spool_writer (id, node) VALUES ($1, $2)", [this.id, this.host.node]);
      } else {
        // Touched with each row, and by the spool's heartbeat between rows: a live writer is never swept.
        await client.query("UPDATE spool_writer SET touched_at = now() WHERE id = $1", [this.id]);
      }
      await client.query("INSERT INTO spool_chunk (id, seq, bytes) VALUES ($1, $2, $3)", [this.id, seq, bytes]);
      await client.query("COMMIT");
      this.written = seq + 1;
    });
  }

  protected async persist(envelope: Envelope): Promise<void> {
    const envelopeJson = encodeEnvelope(envelope).toString("utf8");
    const last = this.heldBytes === 0 ? null : this.held.length === 1 ? this.held[0] : Buffer.concat(this.held, this.heldBytes);
    await this.host.commitMessage({ id: this.id, envelopeJson, size: this.bodyLength, crc: this.bodyCrc, written: this.written, last });
  }

  protected async cleanup(committed: boolean): Promise<void> {
    this.held = [];
    this.heldBytes = 0;
    this.host.release(this.reserved);
    this.reserved = 0;
    if (!committed && this.written > 0) {
      // Best effort: when the database is away, the sweep removes these rows later.
      await this.host.pool.query(
        `WITH w AS (DELETE FROM spool_writer WHERE id = $1 RETURNING id)
         DELETE FROM spool_chunk WHERE id IN (SELECT id FROM w)`,
        [this.id],
      ).catch(() => {});
    }
    this.host.writerDone(this, committed);
  }

  protected trackCommit(p: Promise<void>): void {
    this.host.trackCommit(p);
  }

  /** Registered in spool_writer (rows written, not yet committed or cleaned up). */
  get registered(): boolean {
    return this.written > 0 && this.state !== "committed";
  }
}
