/**
 * The shared `QueueStore` of a cluster (`storage.kind: postgres`): every
 * node's queue manager works from the same rows, and a node holds the
 * messages in its memory by a lease on their rows.
 *
 * Leases (queue-store.ts `Leases`):
 * - `lease_node` names the holder, `lease_until` when the lease ends unless
 *   renewed (ms, the nodes' clocks: they must agree to well within the lease
 *   time, which NTP gives by orders of magnitude). A node renews the leases
 *   of what it holds every third of the lease time; a node that dies stops
 *   renewing, and once its leases have ended any other node takes the rows
 *   back (`reap`) and claims them as due mail. A node that is only slow may
 *   then deliver a message another node delivers too: at-least-once, as in
 *   every MTA, never lost.
 * - Claims take due rows with `FOR UPDATE SKIP LOCKED`, so nodes claiming at
 *   the same moment never wait for each other nor take the same row.
 * - Writes are conditional on holding the lease: a node that lost one gets
 *   `LeaseLost` and drops the message from memory instead of overwriting the
 *   new holder's state.
 * - `open()` and `close()` release only this node's own leases (a restart of
 *   this node), never another's.
 * - `request`: an operation a person asked for (petrel queue hold …) of a
 *   message another node holds; the holder picks it up when it renews.
 *
 * The aggregates (`waiting`, `counts`, `page`) cover the whole cluster but
 * the rows this node leases, which its queue manager counts from memory
 * (queue-view.ts). The per-recipient waiting counts are arrays on the row
 * (`w_domain`, `w_status`, `w_count`), written with the state in one
 * statement, so a summary never parses recipients.
 *
 * Every commit is synchronous (PostgreSQL's default): a stored state is on
 * the database's stable storage when the promise resolves, `durable` or not.
 */
import type { PostgresPool } from "./postgres-pool.ts";
import type { Now } from "../../mail/clock.ts";
import { domainOf } from "../../mail/address.ts";
import type { QueueId } from "../../spool/spool.ts";
import type { MessageState } from "../../queue/queue-state.ts";
import { LeaseLost, type ClaimKind, type Leases, type QueueRequestOp, type QueueStore, type SaveOptions, type StoreCounts, type StoredMessage, type StoredRow, type WaitingRow } from "../../queue/queue-store.ts";
import { dueOf, restoreRecipients, triedOf, waitingStatus } from "../../queue/stored-state.ts";

/** Rows touched by one statement of retryAll, and of one reap. */
const CHUNK = 10_000;

const COLUMNS = "id, arrival, sender, size, held, hold_reason, retry_at, recipients, lease_node, lease_until";

interface Row {
  id: string;
  arrival: string;
  sender: string;
  size: string | null;
  held: boolean;
  hold_reason: string | null;
  retry_at: string | null;
  recipients: string;
  lease_node: string | null;
  lease_until: string | null;
}

export interface PostgresQueueStoreOptions {
  readonly pool: PostgresPool;
  /** Who holds the leases this store takes: the node's name (a queue tool adds its own suffix, never sharing the server's leases). */
  readonly holder: string;
  /** How long a lease lasts unrenewed (ms). */
  readonly leaseMs: number;
  readonly clock: Now;
}

export class PostgresQueueStore implements QueueStore, Leases {
  readonly leases: Leases = this;
  readonly ms: number;
  private readonly pool: PostgresPool;
  private readonly holder: string;
  private readonly clock: Now;

  constructor(options: PostgresQueueStoreOptions) {
    this.pool = options.pool;
    this.holder = options.holder;
    this.ms = options.leaseMs;
    this.clock = options.clock;
  }

  /** This node starts afresh: what an earlier run of it held is nobody's now (other nodes' leases are theirs). */
  async open(): Promise<void> {
    await this.releaseMine();
  }

  /** A clean stop: this node's messages are free for the others at once, without waiting for the leases to end. */
  async close(): Promise<void> {
    await this.releaseMine().catch(() => {});
  }

  /** A row with no waiting recipient is made due (as in `reap`): this node stopped between its final state and its removal. */
  private async releaseMine(): Promise<void> {
    await this.pool.query(
      "UPDATE queue_message SET lease_node = NULL, lease_until = NULL, due = COALESCE(due, $2) WHERE lease_node = $1",
      [this.holder, this.clock.now()],
    );
  }

  private until(): number {
    return this.clock.now() + this.ms;
  }

  async save(message: StoredMessage, options: SaveOptions): Promise<void> {
    const v = this.values(message);
    const claimed = options.claimed;
    const updated = await this.pool.query(
      `UPDATE queue_message SET arrival = $2, sender = $3, size = $4, held = $5, hold_reason = $6, due = $7, tried = $8, retry_at = NULL,
         recipients = $9, w_domain = $10, w_status = $11, w_count = $12,
         lease_node = CASE WHEN $13 THEN $14 ELSE NULL END, lease_until = CASE WHEN $13 THEN $15::bigint ELSE NULL END
       WHERE id = $1 AND (lease_node = $14 OR lease_node IS NULL)`,
      [...v, claimed, this.holder, this.until()],
    );
    // Rows are made only by adopt: no row means another node finished the message and removed it — never made again here.
    if (updated.rowCount !== 1) throw new LeaseLost(`queue message ${message.state.id} is leased by another node, or gone`);
  }

  async adopt(message: StoredMessage): Promise<boolean> {
    return this.insert(this.values(message), true);
  }

  private async insert(v: unknown[], claimed: boolean): Promise<boolean> {
    const r = await this.pool.query(
      `INSERT INTO queue_message (id, arrival, sender, size, held, hold_reason, due, tried, recipients, w_domain, w_status, w_count, lease_node, lease_until)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING`,
      [...v, claimed ? this.holder : null, claimed ? this.until() : null],
    );
    return r.rowCount === 1;
  }

  /** The columns $1…$12 of a message's row. */
  private values(message: StoredMessage): unknown[] {
    const s = message.state;
    const w = waitingCounts(s);
    return [s.id, s.arrival, message.sender, message.size ?? null, s.held, s.holdReason ?? null, dueOf(s), triedOf(s),
      JSON.stringify(s.recipients), w.map((x) => x.domain), w.map((x) => x.status), w.map((x) => x.count)];
  }

  async remove(id: QueueId): Promise<void> {
    await this.pool.query("DELETE FROM queue_message WHERE id = $1 AND (lease_node IS NULL OR lease_node = $2)", [id, this.holder]);
  }

  async get(id: QueueId): Promise<StoredRow | null> {
    const r = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM queue_message WHERE id = $1`, [id]);
    return r.rows.length === 0 ? null : this.toStored(r.rows[0]);
  }

  async claimDue(kind: ClaimKind, now: number, limit: number): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    await this.reap(now);
    const r = await this.pool.query<Row>(
      `UPDATE queue_message SET lease_node = $1, lease_until = $2 WHERE id IN (
         SELECT id FROM queue_message WHERE lease_node IS NULL AND NOT held AND due IS NOT NULL AND tried = $3 AND due <= $4
         ORDER BY due LIMIT $5 FOR UPDATE SKIP LOCKED)
       RETURNING ${COLUMNS}`,
      [this.holder, now + this.ms, kind === "deferred", now, limit],
    );
    return r.rows.map((row) => this.toStored(row));
  }

  /**
   * Leases other nodes let end (they died, or lost the database) are
   * released, so their messages are claimed like any waiting mail. A row
   * with no waiting recipient (its node died while removing a finished
   * message) is made due, so whoever claims it finishes the removal.
   */
  private async reap(now: number): Promise<void> {
    await this.pool.query(
      `UPDATE queue_message SET lease_node = NULL, lease_until = NULL, due = COALESCE(due, $2) WHERE id IN (
         SELECT id FROM queue_message WHERE lease_node IS NOT NULL AND lease_until < $2 AND lease_node <> $1
         ORDER BY lease_until LIMIT ${CHUNK} FOR UPDATE SKIP LOCKED)`,
      [this.holder, now],
    );
  }

  async claim(id: QueueId): Promise<StoredMessage | null> {
    const now = this.clock.now();
    const r = await this.pool.query<Row>(
      `UPDATE queue_message SET lease_node = $2, lease_until = $3, request = NULL
       WHERE id = $1 AND (lease_node IS NULL OR lease_node = $2 OR lease_until < $4) RETURNING ${COLUMNS}`,
      [id, this.holder, now + this.ms, now],
    );
    return r.rows.length === 0 ? null : this.toStored(r.rows[0]);
  }

  async renew(ids: readonly QueueId[]): Promise<{ lost: QueueId[]; requests: Map<QueueId, QueueRequestOp> }> {
    const requests = new Map<QueueId, QueueRequestOp>();
    // Leases of this node that ended on rows no longer in its memory (their last write failed while
    // the database was away): nobody else would take them back in a cluster of one.
    await this.pool.query(
      `UPDATE queue_message SET lease_node = NULL, lease_until = NULL, due = COALESCE(due, $3)
       WHERE lease_node = $1 AND lease_until < $3 AND NOT (id = ANY($2))`,
      [this.holder, ids, this.clock.now()],
    );
    if (ids.length === 0) return { lost: [], requests };
    const r = await this.pool.query<{ id: string; request: QueueRequestOp | null }>(
      `WITH mine AS (SELECT id, request FROM queue_message WHERE id = ANY($1) AND lease_node = $2 FOR UPDATE)
       UPDATE queue_message q SET lease_until = $3, request = NULL FROM mine WHERE q.id = mine.id RETURNING q.id, mine.request`,
      [ids, this.holder, this.until()],
    );
    const held = new Set<QueueId>();
    for (const row of r.rows) {
      held.add(row.id);
      if (row.request !== null) requests.set(row.id, row.request);
    }
    return { lost: ids.filter((id) => !held.has(id)), requests };
  }

  /**
   * Ask the node holding `id` to do `op` (it picks it up when it renews);
   * the message's holder, or null when no live node holds it (the caller
   * claims it and does the operation itself).
   */
  async request(id: QueueId, op: QueueRequestOp): Promise<string | null> {
    const r = await this.pool.query<{ lease_node: string }>(
      "UPDATE queue_message SET request = $2 WHERE id = $1 AND lease_node IS NOT NULL AND lease_node <> $3 AND lease_until >= $4 RETURNING lease_node",
      [id, op, this.holder, this.clock.now()],
    );
    return r.rows[0]?.lease_node ?? null;
  }

  /** Whether a request made of `id` is still waiting for its holder. */
  async requestPending(id: QueueId): Promise<boolean> {
    const r = await this.pool.query("SELECT 1 FROM queue_message WHERE id = $1 AND request IS NOT NULL", [id]);
    return r.rows.length > 0;
  }

  /** `everyMs` 0: whenever no other node is at it (a node's start). */
  async reconcileTurn(everyMs: number, atStart = false): Promise<boolean> {
    const now = this.clock.now();
    // At start a turn this holder still has is its dead predecessor's (one live process per node
    // name: the node registry), cut off by a crash mid-scan: take it now, not when its lease ends.
    // And at start a recent finish by another node does not count: its clock may run ahead of
    // ours, and what this node accepted before it died must be found now, not an interval later.
    const r = await this.pool.query(
      `UPDATE queue_reconcile SET node = $1, lease_until = $2
       WHERE (node IS NULL OR lease_until < $3 OR ($5 AND node = $1)) AND ($5 OR finished_at IS NULL OR finished_at <= $3 - $4::bigint)`,
      [this.holder, now + this.ms, now, everyMs, atStart],
    );
    return r.rowCount === 1;
  }

  async reconcileDone(complete: boolean): Promise<void> {
    await this.pool.query(
      "UPDATE queue_reconcile SET node = NULL, lease_until = NULL, finished_at = CASE WHEN $2 THEN $3::bigint ELSE finished_at END WHERE node = $1",
      [this.holder, complete, this.clock.now()],
    );
  }

  async nextDue(): Promise<number | null> {
    // Besides due mail: when another node's lease ends, its messages may need this node (it may have died).
    const r = await this.pool.query<{ due: string | null; lease: string | null }>(
      `SELECT (SELECT min(due) FROM queue_message WHERE lease_node IS NULL AND NOT held AND due IS NOT NULL AND tried = false) AS due0,
              (SELECT min(due) FROM queue_message WHERE lease_node IS NULL AND NOT held AND due IS NOT NULL AND tried = true) AS due,
              (SELECT min(lease_until) + 1 FROM queue_message WHERE lease_node IS NOT NULL AND lease_node <> $1) AS lease`,
      [this.holder],
    );
    const row = r.rows[0] as unknown as Record<string, string | null>;
    const times = [row.due0, row.due, row.lease].filter((t) => t !== null).map(Number);
    return times.length === 0 ? null : Math.min(...times);
  }

  async known(ids: readonly QueueId[]): Promise<Set<QueueId>> {
    const r = await this.pool.query<{ id: string }>("SELECT id FROM queue_message WHERE id = ANY($1)", [ids]);
    return new Set(r.rows.map((row) => row.id));
  }

  async page(after: QueueId | null, limit: number): Promise<StoredRow[]> {
    const r = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM queue_message WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2`, [after, limit]);
    return r.rows.map((row) => this.toStored(row));
  }

  async waiting(now: number, bounds: readonly number[]): Promise<WaitingRow[]> {
    const cases = bounds.map((b, i) => `WHEN $2::bigint - m.arrival <= ${Math.floor(b)} THEN ${i}`).join(" ");
    const bucket = bounds.length === 0 ? "0" : `CASE ${cases} ELSE ${bounds.length} END`;
    const r = await this.pool.query<{ domain: string; status: "queued" | "deferred"; bucket: number; count: string }>(
      `SELECT u.d AS domain, u.s AS status, ${bucket} AS bucket, sum(u.c) AS count
       FROM queue_message m, unnest(m.w_domain, m.w_status, m.w_count) AS u(d, s, c)
       WHERE m.lease_node IS DISTINCT FROM $1 GROUP BY 1, 2, 3`,
      bounds.length === 0 ? [this.holder] : [this.holder, now],
    );
    return r.rows.map((row) => ({ domain: row.domain, status: row.status, bucket: Number(row.bucket), count: Number(row.count) }));
  }

  async counts(): Promise<StoreCounts> {
    const r = await this.pool.query<{ messages: string; held: string; oldest: string | null }>(
      `SELECT count(*) AS messages, count(*) FILTER (WHERE held) AS held, min(arrival) AS oldest
       FROM queue_message WHERE lease_node IS DISTINCT FROM $1`,
      [this.holder],
    );
    const row = r.rows[0];
    return { messages: Number(row.messages), held: Number(row.held), oldestArrival: row.oldest === null ? null : Number(row.oldest) };
  }

  /** Messages another node holds are that node's to retry (they are in its memory, due now or soon). */
  async retryAll(now: number): Promise<{ scheduled: number; held: QueueId[] }> {
    let scheduled = 0;
    let after = "";
    for (;;) {
      const r = await this.pool.query<{ id: string }>(
        `UPDATE queue_message SET due = $1, retry_at = $1 WHERE id IN (
           SELECT id FROM queue_message WHERE lease_node IS NULL AND NOT held AND due IS NOT NULL AND id > $2
           ORDER BY id LIMIT ${CHUNK} FOR UPDATE SKIP LOCKED) RETURNING id`,
        [now, after],
      );
      scheduled += r.rows.length;
      if (r.rows.length < CHUNK) break;
      after = r.rows.reduce((max, row) => (row.id > max ? row.id : max), after);
    }
    const held = await this.pool.query<{ id: string }>("SELECT id FROM queue_message WHERE held AND lease_node IS NULL ORDER BY id");
    return { scheduled, held: held.rows.map((row) => row.id) };
  }

  private toStored(row: Row): StoredRow {
    const state: MessageState = {
      id: row.id, arrival: Number(row.arrival), held: row.held,
      ...(row.hold_reason !== null ? { holdReason: row.hold_reason } : {}),
      recipients: restoreRecipients(row.recipients, row.retry_at === null ? null : Number(row.retry_at)),
    };
    const live = row.lease_node !== null && row.lease_until !== null && Number(row.lease_until) >= this.clock.now();
    return {
      state, sender: row.sender, size: row.size === null ? undefined : Number(row.size),
      claimed: row.lease_node === this.holder,
      ...(live ? { holder: row.lease_node! } : {}),
    };
  }
}

/** Waiting recipients per destination domain and status: the row's share of `waiting()`. */
function waitingCounts(s: MessageState): { domain: string; status: "queued" | "deferred"; count: number }[] {
  const counts = new Map<string, { domain: string; status: "queued" | "deferred"; count: number }>();
  for (const r of s.recipients) {
    const status = waitingStatus(r);
    if (status === null) continue;
    const domain = domainOf(r.address);
    const key = `${status} ${domain}`;
    const c = counts.get(key);
    if (c) c.count++;
    else counts.set(key, { domain, status, count: 1 });
  }
  return [...counts.values()];
}
