/**
 * The one lease to order a certificate for the cluster (table acme_order_lease, one row): `node`
 * holds it until `lease_until` (ms since the epoch by that node's clock, as the queue's leases).
 * Taken by one conditional UPDATE — free, expired, or already this node's (a node restarted after
 * a crash takes its own back at once) — so two nodes taking it together cannot both succeed: the
 * second UPDATE waits for the first's row lock, then sees the row taken.
 */
import type { Clock } from "../../mail/clock.ts";
import type { LeaseTaken, OrderLease } from "../../acme/order-lease.ts";
import type { PostgresPool } from "./postgres-pool.ts";

/**
 * An order takes seconds to a minute; a node that dies while ordering makes the others wait this
 * long, which matters little against the month a renewal has left.
 */
export const ACME_LEASE_TIME = 5 * 60_000;

export interface PostgresOrderLeaseOptions {
  readonly pool: PostgresPool;
  readonly node: string;
  readonly clock: Clock;
  readonly leaseTime?: number;
}

export class PostgresOrderLease implements OrderLease {
  readonly leaseTime: number;
  readonly #pool: PostgresPool;
  readonly #node: string;
  readonly #clock: Clock;

  constructor(options: PostgresOrderLeaseOptions) {
    this.#pool = options.pool;
    this.#node = options.node;
    this.#clock = options.clock;
    this.leaseTime = options.leaseTime ?? ACME_LEASE_TIME;
  }

  async acquire(): Promise<LeaseTaken> {
    // Between a refused UPDATE and the look at the holder, the holder may release: try again.
    for (let attempt = 0; ; attempt++) {
      const now = this.#clock.now();
      const taken = await this.#pool.query(
        `UPDATE acme_order_lease SET node = $1, lease_until = $2::bigint + $3::bigint
          WHERE one AND (node IS NULL OR node = $1 OR lease_until <= $2) RETURNING node`,
        [this.#node, now, this.leaseTime],
      );
      if (taken.rowCount === 1) return { taken: true };
      const held = (await this.#pool.query<{ node: string | null; lease_until: string | null }>("SELECT node, lease_until FROM acme_order_lease")).rows[0];
      if ((held?.node != null && held.lease_until !== null) || attempt >= 2) {
        return { taken: false, holder: held?.node ?? "another node", until: Number(held?.lease_until ?? now + this.leaseTime) };
      }
    }
  }

  async renew(): Promise<boolean> {
    const r = await this.#pool.query(
      "UPDATE acme_order_lease SET lease_until = $2::bigint + $3::bigint WHERE one AND node = $1",
      [this.#node, this.#clock.now(), this.leaseTime],
    );
    return r.rowCount === 1;
  }

  async holdUntil(at: number): Promise<void> {
    await this.#pool.query("UPDATE acme_order_lease SET lease_until = $2::bigint WHERE one AND node = $1", [this.#node, at]);
  }

  async release(): Promise<void> {
    await this.#pool.query("UPDATE acme_order_lease SET node = NULL, lease_until = NULL WHERE one AND node = $1", [this.#node]);
  }
}
