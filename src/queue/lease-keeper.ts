import type { Logger } from "pino";
import type { Clock } from "../mail/clock.ts";
import type { QueueId } from "../spool/spool.ts";
import type { DestinationSlots } from "./destination-slots.ts";
import type { Leases, QueueRequestOp } from "./queue-store.ts";

/**
 * The heartbeat of a node in a cluster's queue: every third of the lease
 * time it renews the leases of the messages in the queue manager's memory
 * (and its destination slots), tells the manager which it lost and what
 * people asked of the ones it holds, and gives the manager a turn to claim
 * what other nodes left (their evictions, the messages of a node that died)
 * and, when the cluster's turn comes, to reconcile the spool. A renewal that
 * fails (the database is away) is tried again at the next tick; the leases
 * held meanwhile end on their own if it stays away longer than the lease.
 */
export interface LeaseKeeperHooks {
  /** The messages this node holds in memory. */
  held(): QueueId[];
  lost(id: QueueId): void;
  request(id: QueueId, op: QueueRequestOp): void;
  /** Deliveries in flight per destination. */
  inUse(): ReadonlyMap<string, number>;
  /** Every tick: claim due work, retry what could not be queued. */
  tick(): void;
  /** A look through the spool for messages no node queued (the cluster's turn was given to this node); absent: never this node's (the queue tools). */
  readonly reconcile?: () => Promise<boolean>;
}

export class LeaseKeeper {
  private readonly leases: Leases;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly slots: DestinationSlots | undefined;
  private readonly reconcileInterval: number;
  private readonly hooks: LeaseKeeperHooks;
  private timer: unknown = null;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();
  private reconciling = false;

  constructor(deps: { leases: Leases; clock: Clock; log: Logger; slots?: DestinationSlots; reconcileInterval: number; hooks: LeaseKeeperHooks }) {
    this.leases = deps.leases;
    this.clock = deps.clock;
    this.log = deps.log;
    this.slots = deps.slots;
    this.reconcileInterval = deps.reconcileInterval;
    this.hooks = deps.hooks;
  }

  start(): void {
    this.arm();
  }

  /** Stop ticking; resolves once a tick under way has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) this.clock.cancel(this.timer);
    this.timer = null;
    await this.running;
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.clock.schedule(() => {
      this.timer = null;
      this.running = this.tick().finally(() => this.arm());
    }, Math.max(1, Math.floor(this.leases.ms / 3)));
  }

  /** One renewal (tests drive it through the clock). */
  private async tick(): Promise<void> {
    try {
      const { lost, requests } = await this.leases.renew(this.hooks.held());
      for (const id of lost) this.hooks.lost(id);
      for (const [id, op] of requests) this.hooks.request(id, op);
    } catch (err) {
      this.log.error({ err }, "could not renew this node's message leases");
    }
    if (this.slots !== undefined) {
      await this.slots.renew(this.hooks.inUse()).catch((err) => this.log.error({ err }, "could not renew this node's destination slots"));
    }
    this.hooks.tick();
    if (!this.reconciling && this.hooks.reconcile !== undefined) {
      this.reconciling = true;
      void this.reconcileIfTurn().finally(() => (this.reconciling = false));
    }
  }

  /**
   * Take the cluster's reconcile turn when it is due (one node at a time); false when it was not
   * this node's. `atStart`: due whenever no other node is at it — a node starting again after a
   * crash looks for what it accepted and never queued, without waiting for the interval.
   */
  async reconcileIfTurn(atStart = false): Promise<boolean> {
    const reconcile = this.hooks.reconcile;
    if (reconcile === undefined) return false;
    let turn = false;
    try {
      turn = await this.leases.reconcileTurn(atStart ? 0 : this.reconcileInterval, atStart);
      if (!turn) return false;
      const complete = await reconcile();
      await this.leases.reconcileDone(complete);
    } catch (err) {
      this.log.error({ err }, "could not reconcile the spool with the queue store");
      if (turn) await this.leases.reconcileDone(false).catch(() => {});
    }
    return turn;
  }
}
