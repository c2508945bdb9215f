/**
 * The embedded `QueueStore`: one SQLite database, `<dataDir>/queue-state/queue.sqlite`,
 * through Node's built-in `node:sqlite` (no package, no native build).
 *
 * Why SQLite rather than files of our own:
 * - The queue needs a due-time order over a million messages that changes
 *   with every attempt, lookups by id (hold, release, show), pages in id
 *   order, and per-domain aggregates (`petrel queue summary`). A B-tree
 *   index on the due time and a GROUP BY give all of that; the alternative,
 *   due-time-bucketed append-only files, needs its own compaction, its own
 *   secondary index by id and its own incremental aggregates — each a place
 *   for the bugs SQLite had decades to lose.
 * - Write-ahead logging with `synchronous = NORMAL`: a commit is a write to
 *   the WAL, without fsync; the database survives a process crash whole, and
 *   a power failure loses at most the newest commits — which, for queue
 *   state, only means a recipient is tried again (queue-store.ts). Writes a
 *   person or a DSN depends on are made with `synchronous = FULL`.
 * - Many saves in a turn of the event loop are one transaction: a backlog
 *   draining at thousands of messages a second costs a few commits a second.
 * - The same tables fit PostgreSQL (issue: several nodes on one queue), with
 *   `claimed` turned into a lease.
 * `node:sqlite` is marked "active development" in Node 24; it is used
 * through a dozen statements here, so a change of its API touches this file
 * only. Its calls are synchronous: each statement is short (indexed), bulk
 * work (`retryAll`) goes in chunks between which the event loop runs.
 *
 * Tables:
 *   message(id, arrival, sender, size, held, hold_reason, due, tried, claimed, retry_at, recipients)
 *     `recipients` is the JSON of the message's RecipientState[]; `due` the
 *     earliest next attempt of a waiting recipient (NULL when none waits);
 *     `tried` 0 until a first attempt (the incoming queue); `retry_at` set by
 *     retryAll() and applied to the recipients when the row is read.
 *     Index on (tried, due) for unclaimed, unheld, waiting rows: claims and
 *     the next wake-up read only the head of it.
 *   waiting(message_id, domain, status, arrival, count)
 *     waiting recipients of unclaimed messages per destination domain: what
 *     summary and status count, without reading any recipients' JSON.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "./sqlite-module.ts";
import { domainOf } from "../mail/address.ts";
import type { QueueId } from "../spool/spool.ts";
import type { MessageState } from "./queue-state.ts";
import { dueOf, restoreRecipients, triedOf, waitingStatus } from "./stored-state.ts";
import type { ClaimKind, QueueStore, SaveOptions, StoreCounts, StoredMessage, WaitingRow } from "./queue-store.ts";

/** The schema this code writes; a newer one is refused (written by a newer Petrel). */
const SCHEMA_VERSION = 1;
const FILE = "queue.sqlite";
/** SQLite's page cache for the store, in KiB. */
const CACHE_KIB = 4096;
/** Rows touched by one transaction of retryAll. */
const RETRY_CHUNK = 10_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS message (
  id TEXT PRIMARY KEY,
  arrival INTEGER NOT NULL,
  sender TEXT NOT NULL,
  size INTEGER,
  held INTEGER NOT NULL,
  hold_reason TEXT,
  due INTEGER,
  tried INTEGER NOT NULL,
  claimed INTEGER NOT NULL,
  retry_at INTEGER,
  recipients TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS message_due ON message (tried, due) WHERE claimed = 0 AND held = 0 AND due IS NOT NULL;
CREATE INDEX IF NOT EXISTS message_claimed ON message (claimed) WHERE claimed = 1;
CREATE INDEX IF NOT EXISTS message_held ON message (held) WHERE held = 1;
CREATE TABLE IF NOT EXISTS waiting (
  message_id TEXT NOT NULL,
  domain TEXT NOT NULL,
  status TEXT NOT NULL,
  arrival INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (message_id, domain, status)
) WITHOUT ROWID;
`;

interface MessageRow {
  id: string;
  arrival: number;
  sender: string;
  size: number | null;
  held: number;
  hold_reason: string | null;
  claimed: number;
  retry_at: number | null;
  recipients: string;
}

const COLUMNS = "id, arrival, sender, size, held, hold_reason, claimed, retry_at, recipients";

interface PendingWrite {
  readonly run: () => void;
  readonly durable: boolean;
  resolve(): void;
  reject(err: unknown): void;
}

export class SqliteQueueStore implements QueueStore {
  readonly dir: string;
  private readonly fsync: boolean;
  private db: DatabaseSync | null = null;
  private st: Record<string, StatementSync> = {};
  private pending: PendingWrite[] = [];
  private flushScheduled = false;

  /** `fsync: false` (tests, benchmarks) never syncs: a power failure may lose any of it. */
  constructor(dir: string, options: { fsync?: boolean } = {}) {
    this.dir = dir;
    this.fsync = options.fsync ?? true;
  }

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const db = new DatabaseSync(join(this.dir, FILE));
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(`PRAGMA synchronous = ${this.fsync ? "NORMAL" : "OFF"}`);
      // 4 MiB of page cache: claims and wake-ups read the head of one index, pages by id and
      // aggregates stream; the kernel's page cache holds the rest. It is part of the server's RSS.
      db.exec(`PRAGMA cache_size = -${CACHE_KIB}`);
      const version = Number((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version);
      if (version > SCHEMA_VERSION) {
        throw new Error(`${join(this.dir, FILE)} has queue state of schema ${version}, written by a newer Petrel (this one knows ${SCHEMA_VERSION}); run that version`);
      }
      db.exec(SCHEMA);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
    this.prepare(db);
    this.unclaimAll();
  }

  private prepare(db: DatabaseSync): void {
    const p = (sql: string) => db.prepare(sql);
    this.st = {
      upsert: p(`INSERT INTO message (id, arrival, sender, size, held, hold_reason, due, tried, claimed, retry_at, recipients)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)
        ON CONFLICT (id) DO UPDATE SET arrival = excluded.arrival, sender = excluded.sender, size = excluded.size,
          held = excluded.held, hold_reason = excluded.hold_reason, due = excluded.due, tried = excluded.tried,
          claimed = excluded.claimed, retry_at = NULL, recipients = excluded.recipients`),
      deleteMessage: p("DELETE FROM message WHERE id = ?"),
      deleteWaiting: p("DELETE FROM waiting WHERE message_id = ?"),
      insertWaiting: p("INSERT INTO waiting (message_id, domain, status, arrival, count) VALUES (?, ?, ?, ?, ?)"),
      get: p(`SELECT ${COLUMNS} FROM message WHERE id = ?`),
      due: p(`SELECT ${COLUMNS} FROM message WHERE claimed = 0 AND held = 0 AND due IS NOT NULL AND tried = ? AND due <= ? ORDER BY due LIMIT ?`),
      claim: p("UPDATE message SET claimed = 1 WHERE id = ?"),
      claimOne: p(`UPDATE message SET claimed = 1 WHERE id = ? AND claimed = 0 RETURNING ${COLUMNS}`),
      nextDue: p("SELECT min(due) AS due FROM message WHERE claimed = 0 AND held = 0 AND due IS NOT NULL AND tried = ?"),
      known: p("SELECT id FROM message WHERE id IN (SELECT value FROM json_each(?))"),
      pageFirst: p(`SELECT ${COLUMNS} FROM message ORDER BY id LIMIT ?`),
      pageAfter: p(`SELECT ${COLUMNS} FROM message WHERE id > ? ORDER BY id LIMIT ?`),
      countAll: p("SELECT count(*) AS n FROM message"),
      countClaimed: p("SELECT count(*) AS n FROM message WHERE claimed = 1"),
      countHeld: p("SELECT count(*) AS n FROM message WHERE held = 1 AND claimed = 0"),
      oldest: p("SELECT arrival FROM message WHERE claimed = 0 ORDER BY id LIMIT 1"),
      claimedRows: p(`SELECT ${COLUMNS} FROM message WHERE claimed = 1`),
      unclaim: p("UPDATE message SET claimed = 0 WHERE id = ?"),
      retryChunk: p(`UPDATE message SET due = ?, retry_at = ? WHERE rowid IN (
        SELECT rowid FROM message WHERE claimed = 0 AND held = 0 AND due IS NOT NULL AND id > ? ORDER BY id LIMIT ${RETRY_CHUNK}) RETURNING id`),
      heldIds: p("SELECT id FROM message WHERE held = 1 AND claimed = 0 ORDER BY id"),
    };
  }

  private get database(): DatabaseSync {
    if (this.db === null) throw new Error("queue store is not open");
    return this.db;
  }

  /** A process that held messages in memory is gone: they are waiting again, and counted again. */
  private unclaimAll(): void {
    const rows = this.st.claimedRows.all() as unknown as MessageRow[];
    if (rows.length === 0) return;
    this.transaction(() => {
      for (const row of rows) {
        this.st.unclaim.run(row.id);
        this.writeWaiting(this.toStored(row).state);
      }
    });
  }

  async close(): Promise<void> {
    this.flush();
    this.db?.close();
    this.db = null;
  }

  save(message: StoredMessage, options: SaveOptions): Promise<void> {
    const s = message.state;
    const due = dueOf(s);
    const tried = triedOf(s) ? 1 : 0;
    const json = JSON.stringify(s.recipients);
    return this.write(() => {
      this.st.upsert.run(s.id, s.arrival, message.sender, message.size ?? null, s.held ? 1 : 0, s.holdReason ?? null, due, tried, options.claimed ? 1 : 0, json);
      this.st.deleteWaiting.run(s.id);
      if (!options.claimed) this.writeWaiting(s);
    }, options.durable ?? false);
  }

  private writeWaiting(s: MessageState): void {
    const counts = new Map<string, number>();
    for (const r of s.recipients) {
      const status = waitingStatus(r);
      if (status === null) continue;
      const key = `${status} ${domainOf(r.address)}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    for (const [key, n] of counts) {
      const sp = key.indexOf(" ");
      this.st.insertWaiting.run(s.id, key.slice(sp + 1), key.slice(0, sp), s.arrival, n);
    }
  }

  remove(id: QueueId, options: { readonly durable?: boolean } = {}): Promise<void> {
    return this.write(() => {
      this.st.deleteMessage.run(id);
      this.st.deleteWaiting.run(id);
    }, options.durable ?? false);
  }

  async get(id: QueueId): Promise<(StoredMessage & { claimed: boolean }) | null> {
    this.flush();
    const row = this.st.get.get(id) as unknown as MessageRow | undefined;
    return row === undefined ? null : this.toStored(row);
  }

  async claimDue(kind: ClaimKind, now: number, limit: number): Promise<StoredMessage[]> {
    this.flush();
    const rows = this.st.due.all(kind === "incoming" ? 0 : 1, now, limit) as unknown as MessageRow[];
    if (rows.length === 0) return [];
    this.transaction(() => {
      for (const row of rows) {
        this.st.claim.run(row.id);
        this.st.deleteWaiting.run(row.id);
      }
    });
    return rows.map((row) => this.toStored(row));
  }

  async claim(id: QueueId): Promise<StoredMessage | null> {
    this.flush();
    let row: MessageRow | undefined;
    this.transaction(() => {
      row = this.st.claimOne.get(id) as unknown as MessageRow | undefined;
      if (row !== undefined) this.st.deleteWaiting.run(id);
    });
    return row === undefined ? null : this.toStored(row);
  }

  async nextDue(): Promise<number | null> {
    this.flush();
    let next: number | null = null;
    for (const tried of [0, 1]) {
      const due = (this.st.nextDue.get(tried) as { due: number | null }).due;
      if (due !== null && (next === null || due < next)) next = due;
    }
    return next;
  }

  async known(ids: readonly QueueId[]): Promise<Set<QueueId>> {
    this.flush();
    const rows = this.st.known.all(JSON.stringify(ids)) as unknown as { id: string }[];
    return new Set(rows.map((r) => r.id));
  }

  async page(after: QueueId | null, limit: number): Promise<(StoredMessage & { claimed: boolean })[]> {
    this.flush();
    const rows = (after === null ? this.st.pageFirst.all(limit) : this.st.pageAfter.all(after, limit)) as unknown as MessageRow[];
    return rows.map((row) => this.toStored(row));
  }

  async waiting(now: number, bounds: readonly number[]): Promise<WaitingRow[]> {
    this.flush();
    const cases = bounds.map((b, i) => `WHEN ? - arrival <= ${Math.floor(b)} THEN ${i}`).join(" ");
    const bucket = bounds.length === 0 ? "0" : `CASE ${cases} ELSE ${bounds.length} END`;
    const sql = `SELECT domain, status, ${bucket} AS bucket, sum(count) AS count FROM waiting GROUP BY domain, status, bucket`;
    const rows = this.database.prepare(sql).all(...bounds.map(() => now)) as unknown as { domain: string; status: "queued" | "deferred"; bucket: number; count: number }[];
    return rows.map((r) => ({ domain: r.domain, status: r.status, bucket: Number(r.bucket), count: Number(r.count) }));
  }

  async counts(): Promise<StoreCounts> {
    this.flush();
    const n = (s: StatementSync) => Number((s.get() as { n: number }).n);
    const oldest = this.st.oldest.get() as { arrival: number } | undefined;
    return { messages: n(this.st.countAll) - n(this.st.countClaimed), held: n(this.st.countHeld), oldestArrival: oldest?.arrival ?? null };
  }

  async retryAll(now: number): Promise<{ scheduled: number; held: QueueId[] }> {
    this.flush();
    let scheduled = 0;
    let after = "";
    for (;;) {
      let ids: { id: string }[] = [];
      this.transaction(() => {
        ids = this.st.retryChunk.all(now, now, after) as unknown as { id: string }[];
      });
      scheduled += ids.length;
      if (ids.length < RETRY_CHUNK) break;
      after = ids.reduce((max, r) => (r.id > max ? r.id : max), after);
      // Let the server breathe between chunks of a million-message retry.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const held = (this.st.heldIds.all() as unknown as { id: string }[]).map((r) => r.id);
    return { scheduled, held };
  }

  /** A row as the queue's state, with a pending `retry --all` applied to its waiting recipients. */
  private toStored(row: MessageRow): StoredMessage & { claimed: boolean } {
    const recipients = restoreRecipients(row.recipients, row.retry_at);
    const state: MessageState = {
      id: row.id, arrival: row.arrival, held: row.held === 1,
      ...(row.hold_reason !== null ? { holdReason: row.hold_reason } : {}),
      recipients,
    };
    return { state, sender: row.sender, size: row.size ?? undefined, claimed: row.claimed === 1 };
  }

  // ------------------------------------------------------------------ writes

  /** Queue a write; every write of one turn of the event loop commits in one transaction. */
  private write(run: () => void, durable: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ run, durable, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commit the queued writes now (reads call it first, so they see every write made before them). */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    const durable = this.fsync && batch.some((w) => w.durable);
    try {
      if (durable) this.database.exec("PRAGMA synchronous = FULL");
      this.transaction(() => {
        for (const w of batch) w.run();
      });
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    } finally {
      if (durable) this.db?.exec("PRAGMA synchronous = NORMAL");
    }
    for (const w of batch) w.resolve();
  }

  private transaction(fn: () => void): void {
    const db = this.database;
    db.exec("BEGIN IMMEDIATE");
    try {
      fn();
      db.exec("COMMIT");
    } catch (err) {
      try {
        db.exec("ROLLBACK");
      } catch {
        // already rolled back by SQLite
      }
      throw err;
    }
  }
}
