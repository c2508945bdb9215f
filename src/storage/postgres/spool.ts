/**
 * The spool of `storage.kind: postgres`: messages in the cluster's database, shared by every node.
 *
 * Tables (migration 3, migrations.ts):
 *   spool_message (id, envelope, size, crc, chunks, node, committed_at)  one row per committed message
 *   spool_chunk   (id, seq, bytes)                                        the body, in order
 *   spool_writer  (id, node, touched_at)                                  writers that wrote rows, not yet committed
 *
 * - A message exists for readers (list, scan, readEnvelope, readBody) only once its spool_message
 *   row is committed; that row is written last, in the group-committed transaction
 *   (spool-commit.ts) with synchronous_commit on, so commit() resolving means durable.
 * - Bodies stream in as rows (spool-writer.ts) and out in slices of a row, CRC-32 and size
 *   checked at the end, as the file formats do (a damaged body is an ECORRUPT stream error).
 * - Rows of writers that never commit are removed by the writer when it aborts; when it could not
 *   (the database was away, the node was killed) by any node's sweep: a writer whose spool_writer
 *   row has not been touched for `abandonAfter` is dead, since every live writer's row is touched
 *   by its node's heartbeat. Another node's live writer is never swept; the sweep and a commit
 *   race on the writer's row, and a commit that lost it is refused (ESTALE), never half-stored.
 * - The database going away fails what needs it with SpoolError (commit → a 4xx to the client);
 *   the pool opens new connections once it is back, without a restart.
 */
import type { Readable } from "node:stream";
import { Readable as ReadableStream } from "node:stream";
import { crc32 } from "node:zlib";
import type { Envelope } from "../../mail/envelope.ts";
import { systemClock, type Now } from "../../mail/clock.ts";
import type { PostgresPool } from "./postgres-pool.ts";
import { parseEnvelope } from "../../spool/journal-record.ts";
import { PostgresGroupCommit } from "./spool-commit.ts";
import { PostgresSpoolWriter, type PostgresWriterHost } from "./spool-writer.ts";
import { isQueueId, newQueueId } from "../../spool/queue-id.ts";
import { SpoolError, toSpoolError, type QueueId, type Spool, type SpoolWriter } from "../../spool/spool.ts";
import { ByteBudget, trackUntilSettled } from "../../spool/writer-lifecycle.ts";

export interface PostgresSpoolOptions {
  readonly pool: PostgresPool;
  /** This node's name (which node accepted a message; whose writers these are). */
  readonly node: string;
  readonly onWarning?: (message: string) => void;
  readonly clock?: Now;
  readonly random?: (size: number) => Buffer;
  /** Body bytes gathered before a row is written (default 64 KiB). */
  readonly chunkSize?: number;
  /** Gathered body bytes all writers together may hold (default 32 MiB, as the journal's inline budget). */
  readonly budget?: number;
  /** A writer's row untouched this long (ms) is abandoned (default 10 minutes). */
  readonly abandonAfter?: number;
  /** How often (ms) live writers are touched and abandoned ones swept (default 1 minute); 0: never (tests call sweep()). */
  readonly heartbeatEvery?: number;
}

export interface PostgresSpoolStats {
  /** Commits that resolved. */
  readonly commits: number;
  /** Group-commit transactions that committed (each covers a batch of commits). */
  readonly transactions: number;
}

/** Fresh envelopes kept at most (about a kilobyte each). */
const FRESH_LIMIT = 1000;

/**
 * Body bytes read per query. pg reads bytea as hex text (it decodes binary results as UTF-8),
 * so a whole 64 KiB row arrives as a 128 KiB protocol message over several socket reads: the
 * reader's buffer doubles to hold it (128, then 256 KiB, per row), the hex is a 128 KiB string
 * in V8's large-object space, and a 25 MiB delivery leaves tens of MiB of such garbage waiting
 * for a full GC (measured: RSS +20-28 MiB). A 16 KiB slice is a 32 KiB message that fits one
 * socket read and dies young (RSS +7-10 MiB, about as the filesystem spool), for a round trip
 * per slice.
 */
const READ_PIECE = 16 * 1024;

export class PostgresSpool implements Spool {
  private readonly pool: PostgresPool;
  private readonly node: string;
  private readonly warn: (message: string) => void;
  private readonly clock: Now;
  private readonly random: ((size: number) => Buffer) | undefined;
  private readonly abandonAfter: number;
  private readonly heartbeatEvery: number;
  private readonly committer: PostgresGroupCommit;
  private readonly writers = new Set<PostgresSpoolWriter>();
  private readonly commits = new Set<Promise<void>>();
  private readonly host: PostgresWriterHost;
  private state: "new" | "open" | "closed" = "new";
  private openPromise: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private committedCount = 0;
  /**
   * Envelopes this node committed and no one has read yet: the queue reads a new message's
   * envelope at once, and must get it even when the database went away right after the commit
   * (else the message would wait for the next start's scan). Bounded, oldest dropped first.
   */
  private readonly fresh = new Map<QueueId, string>();

  constructor(options: PostgresSpoolOptions) {
    this.pool = options.pool;
    this.node = options.node;
    this.warn = options.onWarning ?? (() => {});
    this.clock = options.clock ?? systemClock;
    this.random = options.random;
    this.abandonAfter = options.abandonAfter ?? 10 * 60_000;
    this.heartbeatEvery = options.heartbeatEvery ?? 60_000;
    this.committer = new PostgresGroupCommit(this.pool, this.node);
    const budget = new ByteBudget(options.budget ?? 32 * 1024 * 1024);
    this.host = {
      pool: this.pool,
      node: this.node,
      chunkSize: options.chunkSize ?? 64 * 1024,
      reserve: (n) => budget.reserve(n),
      release: (n) => budget.release(n),
      commitMessage: async (request) => {
        await this.committer.commit(request);
        this.fresh.set(request.id, request.envelopeJson);
        if (this.fresh.size > FRESH_LIMIT) this.fresh.delete(this.fresh.keys().next().value!);
      },
      trackCommit: (p) => trackUntilSettled(this.commits, p),
      writerDone: (writer, committed) => {
        this.writers.delete(writer);
        if (committed) this.committedCount++;
      },
    };
  }

  get stats(): PostgresSpoolStats {
    return { commits: this.committedCount, transactions: this.committer.transactions };
  }

  /** Check the tables are there, sweep abandoned writers, start the heartbeat. Idempotent. */
  open(): Promise<void> {
    this.openPromise ??= (async () => {
      try {
        await this.pool.query("SELECT 1 FROM spool_message LIMIT 0");
      } catch (err) {
        this.openPromise = null;
        throw toSpoolError("cannot open the spool in PostgreSQL", err);
      }
      this.state = "open";
      await this.sweep().catch((err: unknown) => this.warn(`spool: ${toSpoolError("cannot sweep abandoned writers", err).message}`));
      if (this.heartbeatEvery > 0) {
        this.timer = setInterval(() => void this.heartbeat(), this.heartbeatEvery);
        this.timer.unref();
      }
    })();
    return this.openPromise;
  }

  /**
   * Remove the rows of writers whose spool_writer row nobody touched for `abandonAfter`
   * (by the database's clock, the one all nodes share); says how many writers were swept.
   */
  async sweep(): Promise<number> {
    const r = await this.pool.query<{ n: string }>(
      `WITH dead AS (DELETE FROM spool_writer WHERE touched_at < now() - make_interval(secs => $1) RETURNING id),
            gone AS (DELETE FROM spool_chunk c USING dead WHERE c.id = dead.id
                       AND NOT EXISTS (SELECT 1 FROM spool_message m WHERE m.id = c.id))
       SELECT count(*) AS n FROM dead`,
      [this.abandonAfter / 1000],
    );
    const n = Number(r.rows[0]?.n ?? 0);
    if (n > 0) this.warn(`spool: removed the body rows of ${n} abandoned writer(s) (never committed)`);
    return n;
  }

  /** Touch this node's live writers, then sweep; failures (the database away) wait for the next beat. */
  private async heartbeat(): Promise<void> {
    const live = [...this.writers].filter((w) => w.registered).map((w) => w.id);
    try {
      if (live.length > 0) await this.pool.query("UPDATE spool_writer SET touched_at = now() WHERE id = ANY($1::text[])", [live]);
      await this.sweep();
    } catch {
      // The database is away: the writers' own calls report it.
    }
  }

  private assertOpen(): void {
    if (this.state !== "open") {
      throw new SpoolError(this.state === "closed" ? "spool is closed" : "spool is not open", { code: "ECLOSED" });
    }
  }

  private checkId(id: QueueId): void {
    if (!isQueueId(id)) throw new SpoolError(`not a queue id: ${JSON.stringify(id)}`, { code: "EINVAL" });
  }

  async create(): Promise<SpoolWriter> {
    this.assertOpen();
    const writer = new PostgresSpoolWriter(this.host, newQueueId(this.clock.now(), this.random));
    this.writers.add(writer);
    return writer;
  }

  async list(): Promise<QueueId[]> {
    this.assertOpen();
    try {
      return (await this.pool.query<{ id: string }>("SELECT id FROM spool_message ORDER BY id")).rows.map((r) => r.id);
    } catch (err) {
      throw toSpoolError("cannot list the spool", err);
    }
  }

  /** In id order, a batch per query (keyset: each query starts past the last id seen). */
  async *scan(batchSize = 1000): AsyncGenerator<QueueId[]> {
    this.assertOpen();
    let after = "";
    for (;;) {
      let ids: QueueId[];
      try {
        const r = await this.pool.query<{ id: string }>("SELECT id FROM spool_message WHERE id > $1 ORDER BY id LIMIT $2", [after, batchSize]);
        ids = r.rows.map((row) => row.id);
      } catch (err) {
        throw toSpoolError("cannot scan the spool", err);
      }
      if (ids.length > 0) yield ids;
      if (ids.length < batchSize) return;
      after = ids[ids.length - 1];
    }
  }

  async readEnvelope(id: QueueId): Promise<Envelope> {
    this.checkId(id);
    let json = this.fresh.get(id);
    if (json !== undefined) {
      this.fresh.delete(id);
      return parseEnvelope(Buffer.from(json, "utf8")) as Envelope;
    }
    try {
      const r = await this.pool.query<{ envelope: string }>("SELECT envelope FROM spool_message WHERE id = $1", [id]);
      if (r.rows.length === 0) throw new SpoolError(`no such message: ${id}`, { code: "ENOENT" });
      json = r.rows[0].envelope;
    } catch (err) {
      throw toSpoolError(`cannot read envelope of ${id}`, err);
    }
    try {
      return parseEnvelope(Buffer.from(json, "utf8")) as Envelope;
    } catch (err) {
      throw toSpoolError(`cannot read envelope of ${id}`, err);
    }
  }

  /**
   * The body as a byte stream, one slice of a row (READ_PIECE) in memory at a time. An invalid id throws at once; an
   * unknown id, a lost connection and a body whose size or checksum does not match arrive as an
   * 'error' event.
   */
  readBody(id: QueueId): Readable {
    this.checkId(id);
    const pool = this.pool;
    async function* rows(): AsyncGenerator<Buffer> {
      try {
        const head = await pool.query<{ size: string; crc: string; chunks: number }>("SELECT size, crc, chunks FROM spool_message WHERE id = $1", [id]);
        if (head.rows.length === 0) throw new SpoolError(`no such message: ${id}`, { code: "ENOENT" });
        const { chunks } = head.rows[0];
        const size = Number(head.rows[0].size);
        const expected = Number(head.rows[0].crc);
        let crc = 0;
        let length = 0;
        for (let seq = 0; seq < chunks; seq++) {
          for (let from = 1; ; from += READ_PIECE) {
            const r = await pool.query<{ bytes: Buffer; total: number }>(
              "SELECT substring(bytes FROM $3 FOR $4) AS bytes, length(bytes) AS total FROM spool_chunk WHERE id = $1 AND seq = $2",
              [id, seq, from, READ_PIECE],
            );
            if (r.rows.length === 0) throw new SpoolError(`chunk ${seq} of ${id} is missing (removed while read?)`, { code: "ECORRUPT" });
            const { bytes, total } = r.rows[0];
            crc = crc32(bytes, crc);
            length += bytes.length;
            if (bytes.length > 0) yield bytes;
            if (from - 1 + READ_PIECE >= total) break;
          }
        }
        if (length !== size) throw new SpoolError(`body is ${length} bytes, ${size} were committed`, { code: "ECORRUPT" });
        if (crc !== expected) throw new SpoolError("body checksum mismatch", { code: "ECORRUPT" });
      } catch (err) {
        throw toSpoolError(`cannot read body of ${id}`, err);
      }
    }
    return ReadableStream.from(rows(), { objectMode: false });
  }

  /** The message and its body rows, in one statement. */
  async remove(id: QueueId): Promise<void> {
    this.checkId(id);
    this.assertOpen();
    this.fresh.delete(id);
    let n: number;
    try {
      const r = await this.pool.query<{ n: string }>(
        `WITH m AS (DELETE FROM spool_message WHERE id = $1 RETURNING id),
              c AS (DELETE FROM spool_chunk WHERE id IN (SELECT id FROM m))
         SELECT count(*) AS n FROM m`,
        [id],
      );
      n = Number(r.rows[0]?.n ?? 0);
    } catch (err) {
      throw toSpoolError(`cannot remove ${id}`, err);
    }
    if (n === 0) throw new SpoolError(`cannot remove ${id}: no such message`, { code: "ENOENT" });
  }

  /** Finish commits in flight, abort open writers; the pool is the caller's (one per process). */
  async close(): Promise<void> {
    if (this.state === "closed") return;
    if (this.openPromise !== null) await this.openPromise.catch(() => {});
    this.state = "closed";
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.commits]);
    await Promise.allSettled([...this.writers].map((w) => w.abort()));
    await this.committer.idle();
  }
}
