/**
 * Per-destination concurrency across a cluster (queue.perDestination holds
 * for all nodes together, as one Postfix qmgr's limit holds for one host):
 * each node holds a number of delivery slots per destination, leased in
 * `queue_destination_slot (destination, node, slots, lease_until)`.
 *
 * - A node starts a delivery only within the slots it holds. When it needs
 *   more, one transaction takes the destination's advisory lock, sums the
 *   slots of the other nodes' live leases, and grants what the limit leaves
 *   — one round trip per growth, not per delivery.
 * - On every lease renewal a node gives back the slots it does not use (so an
 *   idle node does not sit on another's share) and extends the rest; a dead
 *   node's slots end with its lease.
 * - A node whose deliveries to a destination leave nothing waiting there
 *   gives back the slots it no longer uses at once (`shrink`), so the other
 *   nodes' grows find them.
 * - A grow that got nothing is not asked again for a second (REFUSED_MS), so a
 *   destination at its limit costs each node one query a second.
 *
 * Why leased rows and not advisory locks held per slot: a session-level
 * advisory lock lives on one connection, so every slot would pin a pooled
 * connection (or all of them one dedicated connection that, once broken,
 * silently drops every slot while deliveries go on); rows expire on the same
 * clock and renewal as the message leases, and `petrel queue` can show them.
 */
import type { PostgresPool } from "./postgres-pool.ts";
import { inTransaction } from "./postgres-pool.ts";
import type { Clock } from "../../mail/clock.ts";
import type { DestinationSlots } from "../../queue/destination-slots.ts";


/** How long a grow that got nothing is not asked again (ms). */
const REFUSED_MS = 1000;

/** Two-key advisory lock namespace of the slot table ("qslt"). */
const SLOT_LOCK = 0x71736c74;

export class PostgresDestinationSlots implements DestinationSlots {
  private readonly pool: PostgresPool;
  private readonly node: string;
  private readonly leaseMs: number;
  private readonly clock: Clock;
  private readonly slots = new Map<string, number>();
  private readonly asking = new Set<string>();
  /** Destinations whose last grow got nothing, and when it may be asked again. */
  private readonly refused = new Map<string, number>();
  private readonly onError: (err: unknown) => void;
  /** The timer that lets the queue ask again once a refusal has run out. */
  private retry: unknown = null;
  granted: () => void = () => {};
  /** The node's slot writes, one after another: a give-back never lands after a later grant. */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(options: { pool: PostgresPool; node: string; leaseMs: number; clock: Clock; onError: (err: unknown) => void }) {
    this.pool = options.pool;
    this.node = options.node;
    this.leaseMs = options.leaseMs;
    this.clock = options.clock;
    this.onError = options.onError;
  }

  held(destination: string): number {
    return this.slots.get(destination) ?? 0;
  }

  grow(destination: string, want: number, limit: number): void {
    if (this.asking.has(destination) || want <= this.held(destination)) return;
    if ((this.refused.get(destination) ?? 0) > this.clock.now()) return;
    this.asking.add(destination);
    void this.serially(() => this.ask(destination, Math.min(want, limit), limit)).then((got) => {
      this.asking.delete(destination);
      const before = this.held(destination);
      this.slots.set(destination, got);
      if (got > before) this.granted();
      else this.refuse(destination);
    }, (err) => {
      this.asking.delete(destination);
      this.refuse(destination);
      this.onError(err);
    });
  }

  /**
   * Not asked again for REFUSED_MS — and then asked, through the queue's dispatch: the nodes that
   * held the slots may have given them back meanwhile, and nothing else would make this node look
   * before its next renewal (a third of the lease: 10 s by default).
   */
  private refuse(destination: string): void {
    this.refused.set(destination, this.clock.now() + REFUSED_MS);
    this.retry ??= this.clock.schedule(() => {
      this.retry = null;
      this.granted();
    }, REFUSED_MS);
  }

  private async ask(destination: string, want: number, limit: number): Promise<number> {
    const now = this.clock.now();
    return inTransaction(this.pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [SLOT_LOCK, destination]);
      const others = await client.query<{ n: string }>(
        "SELECT coalesce(sum(slots), 0) AS n FROM queue_destination_slot WHERE destination = $1 AND node <> $2 AND lease_until >= $3",
        [destination, this.node, now],
      );
      const got = Math.max(this.held(destination), Math.min(want, limit - Number(others.rows[0].n)));
      await client.query(
        `INSERT INTO queue_destination_slot (destination, node, slots, lease_until) VALUES ($1, $2, $3, $4)
         ON CONFLICT (destination, node) DO UPDATE SET slots = excluded.slots, lease_until = excluded.lease_until`,
        [destination, this.node, got, now + this.leaseMs],
      );
      return got;
    });
  }

  shrink(destination: string, keep: number): void {
    if (this.asking.has(destination) || this.held(destination) <= keep) return;
    if (keep > 0) this.slots.set(destination, keep);
    else this.slots.delete(destination);
    const done = this.serially(() => keep > 0
      ? this.pool.query("UPDATE queue_destination_slot SET slots = $3 WHERE destination = $1 AND node = $2", [destination, this.node, keep])
      : this.pool.query("DELETE FROM queue_destination_slot WHERE destination = $1 AND node = $2", [destination, this.node]));
    void done.catch((err) => this.onError(err));
  }

  private serially<T>(write: () => Promise<T>): Promise<T> {
    const p = this.writes.then(write);
    this.writes = p.catch(() => {});
    return p;
  }

  async renew(inUse: ReadonlyMap<string, number>): Promise<void> {
    this.refused.clear();
    const keep: [string, number][] = [];
    for (const destination of [...this.slots.keys()]) {
      const n = inUse.get(destination) ?? 0;
      if (this.asking.has(destination)) continue;
      if (n > 0) {
        this.slots.set(destination, n);
        keep.push([destination, n]);
      } else {
        this.slots.delete(destination);
      }
    }
    // The parameters are taken now, not when the write's turn comes: a grant finishing meanwhile must not make its row look unused.
    const params = [this.node, keep.map((k) => k[0]), keep.map((k) => k[1]), this.clock.now() + this.leaseMs, [...this.asking]];
    await this.serially(() => this.pool.query(
      `WITH kept AS (SELECT * FROM unnest($2::text[], $3::int[]) AS k(destination, slots)),
            gone AS (DELETE FROM queue_destination_slot WHERE node = $1 AND destination NOT IN (SELECT destination FROM kept) AND NOT (destination = ANY($5::text[])))
       UPDATE queue_destination_slot s SET slots = kept.slots, lease_until = $4 FROM kept WHERE s.node = $1 AND s.destination = kept.destination`,
      params,
    ));
  }

  async open(): Promise<void> {
    await this.pool.query("DELETE FROM queue_destination_slot WHERE node = $1", [this.node]);
  }

  async close(): Promise<void> {
    if (this.retry !== null) this.clock.cancel(this.retry);
    this.retry = null;
    this.slots.clear();
    await this.pool.query("DELETE FROM queue_destination_slot WHERE node = $1", [this.node]).catch(() => {});
  }
}
