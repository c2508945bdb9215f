import type { QueueId } from "../spool/spool.ts";
import type { MessageState } from "./queue-state.ts";

/**
 * Where the queue keeps the state of messages it does not hold in memory,
 * and of those whose state must survive a restart: the per-recipient
 * delivery state, in due-time order. The queue manager holds a bounded set
 * of messages in memory (its active set, as Postfix's qmgr holds at most
 * qmgr_message_active_limit); everything else waits here and is claimed, the
 * earliest due first, as room frees up. No call assumes the whole queue fits
 * in memory: claims, pages and aggregates are bounded by their arguments.
 *
 * The interface is shaped for more than one implementation. The embedded one
 * is SQLite (sqlite-queue-store.ts). A shared one (PostgreSQL, several
 * Petrel nodes on one queue) implements the same calls with leases: `claimed`
 * becomes a lease this node holds (FOR UPDATE SKIP LOCKED, an expiry renewed
 * while the message is in memory), `claimDue` takes only unleased rows, and
 * a node that dies loses its leases instead of being reset at open().
 *
 * Durability: the spool holds what was accepted; the store holds what has
 * happened to it since. A write may be lost in a power failure unless it was
 * `durable` (hold, release, delete, and a state saved before a DSN is sent):
 * losing one only makes the queue try a recipient again, never lose a
 * message, because a message leaves the spool before its state leaves here,
 * and a spooled message the store does not know is queued afresh at start
 * (queue/reconcile.ts).
 */

/** A message's state as stored: the queue's own, and what a listing shows without reading the spool. */
export interface StoredMessage {
  readonly state: MessageState;
  readonly sender: string;
  readonly size: number | undefined;
}

/**
 * Which waiting messages a claim takes: never tried yet (Postfix's incoming
 * queue), or tried and deferred. The queue takes from both in turn, so new
 * mail is not stuck behind a day's backlog that just became due.
 */
export type ClaimKind = "incoming" | "deferred";

export interface SaveOptions {
  /** The queue manager holds the message in memory (a lease, in a shared store); its aggregates are the manager's to count. */
  readonly claimed: boolean;
  /** On stable storage before the promise resolves (a person's decision, or a state a DSN is about to report). */
  readonly durable?: boolean;
}

/** Waiting recipients of one destination domain in one age column. */
export interface WaitingRow {
  readonly domain: string;
  /** Index into the bounds given to `waiting()`: the first bound the age does not exceed, or bounds.length. */
  readonly bucket: number;
  readonly status: "queued" | "deferred";
  readonly count: number;
}

/** Totals over the messages not claimed. */
export interface StoreCounts {
  readonly messages: number;
  readonly held: number;
  /** Arrival of the oldest message, null when there is none. */
  readonly oldestArrival: number | null;
}

/** A person's operation asked of the node that holds a message's lease (the queue tools of a cluster). */
export type QueueRequestOp = "hold" | "release" | "delete" | "retry";

/** A stored row as the queue tools list it: whether this process holds it, and which node does. */
export type StoredRow = StoredMessage & {
  readonly claimed: boolean;
  /** The node whose memory holds the message (a live lease in a shared store); absent when none does. */
  readonly holder?: string;
};

/** This node no longer holds the message's lease (it expired and another node claimed it). */
export class LeaseLost extends Error {
  override readonly name = "LeaseLost";
}

/**
 * What a store shared by several nodes adds: every message this node works
 * on is leased to it in the store — a new one from the moment it is queued,
 * since any node may otherwise find it in the shared spool and take it too
 * — and the leases are renewed while the messages are in memory.
 */
export interface Leases {
  /** How long a lease lasts unrenewed (ms): a dead node's messages wait this long for another node. */
  readonly ms: number;
  /** Store a new message's state leased to this node unless the store knows the id already (another node took it): true when this node has it. */
  adopt(message: StoredMessage): Promise<boolean>;
  /** Extend this node's leases of `ids`; says which it no longer holds, and the operations people asked of it meanwhile. */
  renew(ids: readonly QueueId[]): Promise<{ readonly lost: readonly QueueId[]; readonly requests: ReadonlyMap<QueueId, QueueRequestOp> }>;
  /**
   * Whether this node should look through the spool for messages no node
   * queued (reconcile.ts) now: true for one node at a time, when no node
   * finished doing so within `everyMs` (0: whenever none is at it).
   * `atStart`: a turn this node's name still holds is a dead predecessor's, taken over.
   */
  reconcileTurn(everyMs: number, atStart?: boolean): Promise<boolean>;
  /** This node finished (or gave up) the look `reconcileTurn` gave it. */
  reconcileDone(complete: boolean): Promise<void>;
  /** Ask the node holding `id` to do `op` when it next renews; that node's name, or null when no live node holds it. */
  request(id: QueueId, op: QueueRequestOp): Promise<string | null>;
  /** Whether the request made of `id` still waits for its holder. */
  requestPending(id: QueueId): Promise<boolean>;
}

/**
 * Saves and removes of one message take effect in the order they are called;
 * a read sees every write called before it.
 */
export interface QueueStore {
  /** Present when several nodes share the store (see Leases). */
  readonly leases?: Leases;
  /** Open or create the store; messages claimed by a process that is gone are unclaimed. */
  open(): Promise<void>;
  close(): Promise<void>;
  /** Insert or replace a message's state. */
  save(message: StoredMessage, options: SaveOptions): Promise<void>;
  remove(id: QueueId, options?: { readonly durable?: boolean }): Promise<void>;
  get(id: QueueId): Promise<StoredRow | null>;
  /**
   * Claim up to `limit` messages of `kind` that have a recipient due by
   * `now`, are not held and not claimed, earliest due first. A claimed
   * message's recipients are due as `retry()` left them.
   */
  claimDue(kind: ClaimKind, now: number, limit: number): Promise<StoredMessage[]>;
  /** Claim one message by id (a person acts on it); null when there is none, or it is claimed already. */
  claim(id: QueueId): Promise<StoredMessage | null>;
  /** When the next unclaimed, unheld message falls due; null when none waits. */
  nextDue(): Promise<number | null>;
  /** Which of `ids` the store holds. */
  known(ids: readonly QueueId[]): Promise<Set<QueueId>>;
  /** Messages in queue id order (time order), after `after`, at most `limit`; claimed ones included. */
  page(after: QueueId | null, limit: number): Promise<StoredRow[]>;
  /** Waiting recipients of unclaimed messages by domain, status and age column: `bounds` are ages in ms, ascending. */
  waiting(now: number, bounds: readonly number[]): Promise<WaitingRow[]>;
  counts(): Promise<StoreCounts>;
  /** Every waiting recipient of an unclaimed, unheld message due at `now`; says how many messages that touched, and which are held. */
  retryAll(now: number): Promise<{ readonly scheduled: number; readonly held: readonly QueueId[] }>;
}
