/**
 * The nodes of a cluster (`storage.kind: postgres`), in the table petrel_node: each node registers
 * at start under its name (`storage.node`, default the host's name), writes a heartbeat on a timer
 * and marks itself stopped when it stops cleanly. Anyone reading the table tells a node's health
 * from the age of its last heartbeat: healthy, late (a few beats missed: busy, or cut from the
 * database), gone (stopped, or silent for long enough to be taken for dead).
 *
 * A name identifies one running process: which node holds which delivery is recorded by name. So a
 * start under the name of a node that is alive elsewhere is refused (NodeNameInUse). A node that
 * died without stopping cleanly may be replaced at once from the same host (its process is gone),
 * and from another host once it counts as gone. Each registration carries a random instance id; a
 * heartbeat that finds another instance under its name reports the name lost rather than write
 * over the node that took it.
 *
 * Heartbeats carry the node's clock (injected): nodes of a cluster keep their clocks in step (NTP),
 * which the thresholds — seconds, not milliseconds — tolerate.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Clock } from "../mail/clock.ts";
import { inTransaction, type PostgresPool } from "../storage/postgres/postgres-pool.ts";
import { processRuns } from "../disk/process-runs.ts";

export type NodeHealth = "healthy" | "late" | "gone";

export interface HeartbeatTiming {
  /** How often a node writes its heartbeat. */
  readonly intervalMs: number;
  /** A heartbeat older than this: late. */
  readonly lateMs: number;
  /** Older than this (or stopped): gone — its name is free for another host. */
  readonly goneMs: number;
}

export const DEFAULT_HEARTBEAT: HeartbeatTiming = { intervalMs: 5_000, lateMs: 15_000, goneMs: 60_000 };

export interface ClusterNode {
  readonly name: string;
  readonly host: string;
  readonly pid: number;
  readonly version: string;
  /** ISO 8601. */
  readonly startedAt: string;
  /** ISO 8601. */
  readonly heartbeatAt: string;
  readonly heartbeatAgeSeconds: number;
  /** ISO 8601, when it stopped cleanly; null while it runs (or died). */
  readonly stoppedAt: string | null;
  readonly health: NodeHealth;
  /** The node that answers. */
  readonly self: boolean;
}

/** A start under the name of a node that is alive elsewhere. */
export class NodeNameInUse extends Error {
  override readonly name = "NodeNameInUse";
  readonly node: string;
  readonly host: string;
  readonly pid: number;
  readonly heartbeatAgeSeconds: number;
  constructor(node: string, host: string, pid: number, ageMs: number, goneMs: number) {
    const age = Math.max(0, Math.round(ageMs / 1000));
    super(
      `the node name ${node} is in use by a running node (host ${host}, pid ${pid}, last heartbeat ${age} s ago): ` +
      `give this node another name (storage.node), or stop that one; a node that died counts as gone ${Math.round(goneMs / 1000)} s after its last heartbeat`,
    );
    this.node = node;
    this.host = host;
    this.pid = pid;
    this.heartbeatAgeSeconds = age;
  }
}

export function nodeHealth(ageMs: number, stopped: boolean, timing: HeartbeatTiming = DEFAULT_HEARTBEAT): NodeHealth {
  if (stopped || ageMs >= timing.goneMs) return "gone";
  return ageMs >= timing.lateMs ? "late" : "healthy";
}

/** Names this process holds now (a process may run several nodes: tests). */
const heldHere = new Set<string>();

interface NodeRow {
  name: string;
  host: string;
  pid: number;
  version: string;
  instance: string | null;
  started_at: Date;
  heartbeat_at: Date;
  stopped_at: Date | null;
}

/** Every registered node with its health as of `now`, by name. */
export async function listNodes(pool: PostgresPool, now: number, self: string | null = null, timing: HeartbeatTiming = DEFAULT_HEARTBEAT): Promise<ClusterNode[]> {
  const rows = (await pool.query<NodeRow>("SELECT name, host, pid, version, instance, started_at, heartbeat_at, stopped_at FROM petrel_node ORDER BY name")).rows;
  return rows.map((r) => {
    const ageMs = now - r.heartbeat_at.getTime();
    return {
      name: r.name, host: r.host, pid: r.pid, version: r.version,
      startedAt: r.started_at.toISOString(), heartbeatAt: r.heartbeat_at.toISOString(),
      heartbeatAgeSeconds: Math.max(0, Math.round(ageMs / 1000)),
      stoppedAt: r.stopped_at?.toISOString() ?? null,
      health: nodeHealth(ageMs, r.stopped_at !== null, timing),
      self: r.name === self,
    };
  });
}

export interface NodeRegistration {
  readonly pool: PostgresPool;
  readonly name: string;
  readonly version: string;
  readonly clock: Clock;
  readonly host?: string;
  readonly pid?: number;
  readonly timing?: HeartbeatTiming;
  /** A heartbeat could not be written (the database is away); the next one tries again. */
  readonly onError?: (message: string) => void;
  /** Another process registered under this name (this node was taken for gone). */
  readonly onLost?: (message: string) => void;
}

export class NodeRegistry {
  readonly name: string;
  readonly timing: HeartbeatTiming;
  readonly #o: NodeRegistration;
  readonly #instance = randomUUID();
  #timer: unknown = null;
  #beating: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(o: NodeRegistration) {
    this.#o = o;
    this.name = o.name;
    this.timing = o.timing ?? DEFAULT_HEARTBEAT;
  }

  /** Register (or refuse with NodeNameInUse) and start the heartbeat. */
  static async register(o: NodeRegistration): Promise<NodeRegistry> {
    const r = new NodeRegistry(o);
    await r.#claim();
    r.#schedule();
    return r;
  }

  async #claim(): Promise<void> {
    const o = this.#o;
    const host = o.host ?? hostname();
    const pid = o.pid ?? process.pid;
    const now = o.clock.now();
    await inTransaction(o.pool, async (c) => {
      // One registration of a name at a time, whether or not its row exists yet.
      await c.query("SELECT pg_advisory_xact_lock(hashtext('petrel_node ' || $1))", [o.name]);
      const existing = (await c.query<NodeRow>("SELECT name, host, pid, version, instance, started_at, heartbeat_at, stopped_at FROM petrel_node WHERE name = $1", [o.name])).rows[0];
      if (existing && existing.stopped_at === null) {
        const ageMs = now - existing.heartbeat_at.getTime();
        // Same host: the process is there or not. Our own pid but not held here: a previous life
        // of this process slot (a container restarted, its process is pid 1 again).
        const deadHere = existing.host === host && (existing.pid === pid ? !heldHere.has(o.name) : !processRuns(existing.pid));
        if (ageMs < this.timing.goneMs && !deadHere) throw new NodeNameInUse(o.name, existing.host, existing.pid, ageMs, this.timing.goneMs);
      }
      await c.query(
        `INSERT INTO petrel_node (name, host, pid, version, instance, started_at, heartbeat_at, stopped_at)
         VALUES ($1, $2, $3, $4, $5, to_timestamp($6::double precision / 1000), to_timestamp($6::double precision / 1000), NULL)
         ON CONFLICT (name) DO UPDATE SET host = $2, pid = $3, version = $4, instance = $5, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL`,
        [o.name, host, pid, o.version, this.#instance, now],
      );
    });
    heldHere.add(o.name);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = this.#o.clock.schedule(() => {
      this.#timer = null;
      this.#beating = this.beat().finally(() => this.#schedule());
    }, this.timing.intervalMs);
  }

  /** Write one heartbeat now (the timer does this every intervalMs). */
  async beat(): Promise<void> {
    const o = this.#o;
    try {
      const r = await o.pool.query(
        "UPDATE petrel_node SET heartbeat_at = to_timestamp($3::double precision / 1000) WHERE name = $1 AND instance = $2 AND stopped_at IS NULL",
        [o.name, this.#instance, o.clock.now()],
      );
      if (r.rowCount === 0) o.onLost?.(`the node name ${o.name} was taken by another process after this node missed its heartbeats; this node no longer counts as ${o.name} — stop it`);
    } catch (err) {
      o.onError?.(`node ${o.name}: heartbeat not written: ${(err as Error).message}`);
    }
  }

  /** The cluster's nodes as this node sees them now. */
  nodes(): Promise<ClusterNode[]> {
    return listNodes(this.#o.pool, this.#o.clock.now(), this.name, this.timing);
  }

  /** Stop the heartbeat and mark this node stopped (its name is free at once). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    heldHere.delete(this.name);
    if (this.#timer !== null) this.#o.clock.cancel(this.#timer);
    await this.#beating;
    const o = this.#o;
    await o.pool.query("UPDATE petrel_node SET stopped_at = to_timestamp($3::double precision / 1000) WHERE name = $1 AND instance = $2", [o.name, this.#instance, o.clock.now()])
      .catch((err: Error) => o.onError?.(`node ${o.name}: not marked stopped: ${err.message}`));
  }
}
