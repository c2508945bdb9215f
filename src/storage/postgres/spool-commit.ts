/**
 * Group commit on PostgreSQL: the commits of many concurrent sessions go into one transaction,
 * so one WAL flush acknowledges them all — what segment-log.ts does with one fdatasync.
 *
 * - `commit()` queues a request. An idle committer starts at once (after one microtask, so the
 *   requests of the same tick share the batch: no timer, no added latency); while a batch's
 *   transaction runs, new requests wait together and form the next (two lanes overlap their
 *   round trips; see LANES). The number of transactions grows with time, not with commits.
 * - The transaction sets `synchronous_commit` on (whatever the server's or role's default), so
 *   COMMIT returns only once its WAL — and all WAL before it, including the body chunks written
 *   earlier with synchronous_commit off — is flushed (and, with synchronous standbys, confirmed).
 *   Only then are the requests resolved: the 250 follows a durable commit.
 * - A body's last (or only) chunk rides in the same transaction as its envelope: a small message
 *   costs no round trip of its own.
 * - A writer that wrote chunks earlier registered itself in spool_writer; its row is deleted in
 *   the transaction, and a request whose row is gone (swept as abandoned: its chunks are gone too)
 *   is refused rather than committed without its body.
 * - A failed transaction rejects its requests with SpoolError (the client gets a 4xx and sends
 *   again). A batch of several that fails for a reason other than the connection is retried one
 *   request at a time, so one bad message does not refuse its neighbours.
 */
import { withClient, type PostgresClient, type PostgresPool } from "./postgres-pool.ts";
import { SpoolError, toSpoolError, type QueueId } from "../../spool/spool.ts";

export interface CommitRequest {
  readonly id: QueueId;
  readonly envelopeJson: string;
  readonly size: number;
  readonly crc: number;
  /** Chunks written before the commit (rows seq 0 … written-1). */
  readonly written: number;
  /** The rest of the body, stored as row `written` in the commit transaction; null when nothing is left. */
  readonly last: Buffer | null;
}

interface Pending extends CommitRequest {
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Transactions in flight at once. One would leave the database idle during each batch's round
 * trips; two overlap them, and PostgreSQL flushes the WAL of commits that arrive together once.
 */
const LANES = 2;
/** Requests in one transaction at most: 3 parameters a chunk row keeps a batch far below the protocol's 65 535. */
const MAX_BATCH = 1000;
/** Last-chunk bytes in one transaction at most; the rest waits for the next. */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;

export class PostgresGroupCommit {
  private readonly pool: PostgresPool;
  private readonly node: string;
  private pending: Pending[] = [];
  private readonly lanes = new Set<Promise<void>>();
  /** Transactions committed, and messages they committed (for tests and metrics). */
  transactions = 0;
  committed = 0;

  constructor(pool: PostgresPool, node: string) {
    this.pool = pool;
    this.node = node;
  }

  commit(request: CommitRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ...request, resolve, reject });
      if (this.lanes.size < LANES) {
        const lane: Promise<void> = this.run().finally(() => this.lanes.delete(lane));
        this.lanes.add(lane);
      }
    });
  }

  async idle(): Promise<void> {
    while (this.lanes.size > 0) await Promise.all([...this.lanes]);
  }

  /** One lane: takes what is pending as a batch, commits it, again until nothing is left. */
  private async run(): Promise<void> {
    await Promise.resolve();
    while (this.pending.length > 0) {
      let bytes = 0;
      let n = 0;
      while (n < this.pending.length && n < MAX_BATCH) {
        bytes += this.pending[n].last?.length ?? 0;
        n++;
        if (bytes >= MAX_BATCH_BYTES) break;
      }
      const batch = this.pending.splice(0, n);
      try {
        await this.transaction(batch);
      } catch (err) {
        if (batch.length > 1 && !lostConnection(err)) {
          for (const one of batch) await this.transaction([one]).catch((e: unknown) => one.reject(toSpoolError(`cannot commit ${one.id}`, e)));
        } else {
          const e = toSpoolError("cannot commit to the spool database", err);
          for (const r of batch) r.reject(e);
        }
      }
    }
  }

  /** One transaction for `batch`; resolves or rejects each request itself, throws when the transaction failed. */
  private transaction(batch: Pending[]): Promise<void> {
    return withClient(this.pool, async (client) => {
      // BEGIN and the setting in one round trip; ROLLBACK is left to the connection's closing.
      await client.query("BEGIN; SET LOCAL synchronous_commit TO on");
      const refused = await this.claimWriters(client, batch);
      const accepted = batch.filter((r) => !refused.has(r.id));
      await insertLastChunks(client, accepted);
      if (accepted.length > 0) {
        await client.query(
          `INSERT INTO spool_message (id, envelope, size, crc, chunks, node)
           SELECT id, envelope, size, crc, chunks, $6 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::integer[])
             AS m(id, envelope, size, crc, chunks)`,
          [
            accepted.map((r) => r.id), accepted.map((r) => r.envelopeJson), accepted.map((r) => r.size), accepted.map((r) => r.crc),
            accepted.map((r) => r.written + (r.last === null ? 0 : 1)), this.node,
          ],
        );
      }
      await client.query("COMMIT");
      this.transactions++;
      this.committed += accepted.length;
      for (const r of batch) {
        if (refused.has(r.id)) r.reject(new SpoolError(`cannot commit ${r.id}: its body was removed as abandoned`, { code: "ESTALE" }));
        else r.resolve();
      }
    });
  }

  /** Delete the spool_writer rows of requests that wrote chunks before; the ids whose row was gone. */
  private async claimWriters(client: PostgresClient, batch: readonly Pending[]): Promise<Set<QueueId>> {
    const registered = batch.filter((r) => r.written > 0).map((r) => r.id);
    if (registered.length === 0) return new Set();
    const found = await client.query<{ id: string }>("DELETE FROM spool_writer WHERE id = ANY($1::text[]) RETURNING id", [registered]);
    const claimed = new Set(found.rows.map((row) => row.id));
    return new Set(registered.filter((id) => !claimed.has(id)));
  }
}

async function insertLastChunks(client: PostgresClient, batch: readonly Pending[]): Promise<void> {
  const rows = batch.filter((r) => r.last !== null);
  if (rows.length === 0) return;
  const values: unknown[] = [];
  const tuples: string[] = [];
  for (const r of rows) {
    const i = values.length;
    tuples.push(`($${i + 1}, $${i + 2}, $${i + 3})`);
    // A Buffer parameter goes over the wire as binary: no hex doubling.
    values.push(r.id, r.written, r.last);
  }
  await client.query(`INSERT INTO spool_chunk (id, seq, bytes) VALUES ${tuples.join(", ")}`, values);
}

/**
 * The connection, not the data, failed: the server went away (SQLSTATE class 08, 57P01–57P03
 * shutdown/crash) or no connection could be made (a Node error code such as ECONNREFUSED).
 */
export function lostConnection(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return true;
  return code.startsWith("08") || code.startsWith("57P") || /^E[A-Z]+$/.test(code);
}
