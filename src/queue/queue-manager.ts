import type { Logger } from "pino";
import type { Readable } from "node:stream";
import type { Spool, QueueId } from "../spool/spool.ts";
import type { Envelope } from "../mail/envelope.ts";
import type { DeliveryOutcome, DeliveryOutcomes, DsnRecipient, DsnSender, RecipientResolver, Route, Router } from "./ports.ts";
import type { Clock } from "../mail/clock.ts";
import { retryDelay } from "./backoff.ts";
import { HISTORY_LIMIT, isFinal, type MessageState, type RecipientState } from "./queue-state.ts";
import { LeaseLost, type Leases, type QueueRequestOp, type QueueStore, type StoredMessage } from "./queue-store.ts";
import type { DestinationSlots } from "./destination-slots.ts";
import { LeaseKeeper } from "./lease-keeper.ts";
import { fanOut } from "./fan-out.ts";
import { listItem, listPage, summary, totals, type InMemory } from "./queue-view.ts";
import type { QueueListItem, QueuePage, QueueTotals, SummaryRow } from "./queue-report.ts";
import { reconcile } from "./reconcile.ts";
import { importLegacyStates } from "./legacy-state.ts";
import { storedMessage } from "../spool/stored-message.ts";
import { noEvents, type EventSink } from "../events/petrel-event.ts";
import type { InflowControl } from "./inflow.ts";

export type { QueueListItem } from "./queue-report.ts";

/**
 * The queue manager (Postfix's qmgr inside Petrel): takes each spooled
 * message, fans it out into per-recipient state, and drives every recipient
 * to a final state — delivered, or bounced with a DSN to the sender —
 * retrying temporary failures with backoff until the queue lifetime ends.
 * Agents carry mail; this decides when, how many at once, and what next.
 *
 * Memory is bounded whatever the backlog, as in Postfix's active queue
 * (qmgr_message_active_limit): at most `activeLimit` messages are held in
 * memory (`messages`, the active set) with their envelopes and recipients'
 * state. Everything else waits in the queue store (queue-store.ts) in
 * due-time order:
 * - New mail is taken into memory while there is room, else written to the
 *   store to wait its turn.
 * - A message leaves memory as soon as nothing of it is due now or in flight
 *   (deferred, held, or waiting for room): its state goes to the store.
 * - When room frees up, or the earliest due time in the store comes (one
 *   timer), the store is asked for due messages, the earliest first, taking
 *   never-tried and deferred mail in turn so neither starves the other. Each
 *   claim reads only the head of the store's due index: no pass ever scans
 *   the whole queue.
 * A message that only ever lived in memory (delivered at the first attempt,
 * the common case) never touches the store: its state is written only when
 * something happened that the envelope cannot tell again. At start the spool
 * is reconciled with the store in the background (reconcile.ts), so a
 * message accepted just before a crash is queued again.
 */

export interface QueueSettings {
  /** First retry after a temporary failure (ms). Postfix: 300 s. */
  readonly minBackoff: number;
  /** Longest wait between tries (ms). Postfix: 4000 s. */
  readonly maxBackoff: number;
  /** Give up and bounce after this long in the queue (ms). Postfix: 5 d. */
  readonly lifetime: number;
  /** Give up on a bounce (null sender) after this long (ms). */
  readonly bounceLifetime: number;
  /** Send a "delayed" DSN after this long (ms); 0 = never. */
  readonly delayWarning: number;
  /** Deliveries in flight, all destinations together. */
  readonly concurrency: number;
  /** Deliveries in flight to one destination (Postfix default_destination_concurrency_limit: 20). */
  readonly perDestination: number;
  /** Recipients handed to an agent in one delivery (Postfix default_destination_recipient_limit: 50). */
  readonly recipientsPerDelivery: number;
  /** Messages held in memory at once (Postfix qmgr_message_active_limit: 20,000); the rest wait in the store. */
  readonly activeLimit: number;
  /** How long a new message may wait at MAIL for the queue to catch up (Postfix in_flow_delay: 1 s; 0 = never); see inflow.ts. */
  readonly inflowDelay?: number;
}

/** Messages claimed from the store at once when room frees up. */
const CLAIM_BATCH = 200;

export interface QueueManagerDeps {
  readonly spool: Spool;
  readonly store: QueueStore;
  readonly resolve: RecipientResolver;
  /** Who carries each recipient; without one the queue is only read and changed, never delivered (the queue tools offline). */
  readonly router?: Router;
  readonly sendDsn: DsnSender;
  readonly clock: Clock;
  readonly random?: () => number;
  readonly log: Logger;
  readonly settings: QueueSettings;
  /** A message with this many Received: fields is not forwarded (delivery.maxReceived); absent = no check here. */
  readonly maxReceived?: number;
  /** Where an older Petrel kept queue state as JSON files, moved into the store at start (legacy-state.ts). */
  readonly legacyStateDir?: string;
  /** Told what happens to each message (the message trace, metrics). */
  readonly events?: EventSink;
  /** The reception's pacing (Postfix in_flow_delay): given a token for each delivery started, refilled while the queue keeps up. */
  readonly inflow?: InflowControl;
  /** A cluster (the store has `leases`): this node's name, shown on the messages it holds. */
  readonly node?: string;
  /** A cluster: per-destination concurrency held across the nodes (destination-slots.ts). */
  readonly slots?: DestinationSlots;
  /** A cluster: how often one node looks through the spool for messages no node queued (ms). */
  readonly reconcileInterval?: number;
}

interface Job {
  readonly msg: Entry;
  readonly route: Route;
  readonly recipients: RecipientState[];
}

interface Entry extends InMemory {
  state: MessageState;
  envelope: Envelope;
  /** The last write of its state; awaited before the message is removed. */
  saving: Promise<void>;
  /** The store has a row for it, claimed by this manager. */
  stored: boolean;
  /** Deliveries of it in flight. */
  jobs: number;
  /** Being removed (every recipient final, or deleted): no longer scheduled, listed or counted. */
  leaving: boolean;
}

/** What `retry` did: how many messages it made due now, and which it left alone because they are held. */
export interface RetryResult {
  readonly scheduled: number;
  readonly held: readonly QueueId[];
}

export class QueueManager {
  private deps: QueueManagerDeps;
  private readonly random: () => number;
  private readonly store: QueueStore;
  private readonly activeLimit: number;
  /** The active set: messages held in memory (see the top of this file). */
  private readonly messages = new Map<QueueId, Entry>();
  /** The most messages the active set held at once since start (status: proof that memory stayed bounded). */
  private activePeak = 0;
  private readonly inFlight = new Map<string, number>();
  private active = 0;
  private readonly running = new Set<Promise<void>>();
  private timer: unknown = null;
  private timerAt = Infinity;
  private started = false;
  private stopped = false;
  /** Background work (loading, claiming, saving, expiry, reconciliation) that idle() and stop() wait for. */
  private readonly pendingEnqueues = new Set<Promise<void>>();
  /**
   * Work due now, per destination: the messages with due recipients there,
   * in rotation order. Destinations are visited round-robin, and each
   * message gets one delivery in turn, so a huge mailing to one destination
   * neither starves other destinations nor other senders' mail there.
   */
  private readonly ready = new Map<string, { readonly route: Route; readonly ids: QueueId[]; readonly members: Set<QueueId> }>();
  private readonly destinations: string[] = [];
  private rr = 0;
  /** The route of each recipient, computed once. */
  private routes = new WeakMap<RecipientState, Route>();
  private readonly events: EventSink;
  /** Store → memory moves (claims, a person's operations) one at a time, so two never take the same message. */
  private exclusive: Promise<unknown> = Promise.resolve();
  private refilling = false;
  private refillAgain = false;
  /** Which kind of waiting mail the next claim takes first. */
  private incomingFirst = true;
  /** While reconciling: every message handled since start (reconcile.ts `skip`). */
  private seen: Set<QueueId> | null = new Set();
  private recovery: Promise<void> = Promise.resolve();
  /** A cluster: the store's leases, renewed by `keeper`. */
  private readonly leases: Leases | undefined;
  private keeper: LeaseKeeper | null = null;
  /** A cluster: messages committed to the spool that could not be queued yet (the database was away); tried again each renewal. */
  private readonly unqueued = new Set<QueueId>();
  /** A cluster: messages done whose final state could not be stored yet (the database was away); finished at each renewal. */
  private readonly unfinished = new Set<Entry>();

  constructor(deps: QueueManagerDeps) {
    this.deps = deps;
    deps.inflow?.watch(() => this.keepingUp());
    this.store = deps.store;
    this.random = deps.random ?? Math.random;
    this.events = deps.events ?? noEvents;
    this.activeLimit = deps.settings.activeLimit;
    this.leases = deps.store.leases;
  }

  /**
   * Open the store and begin delivering what is due. Reconciling the spool
   * with the store continues in the background (`recovered()`). Without a
   * router (the queue tools when no server runs) nothing is delivered: the
   * queue is only read and changed.
   */
  async start(): Promise<void> {
    await this.deps.store.open();
    await this.deps.slots?.open();
    this.started = this.deps.router !== undefined;
    if (this.started) this.deps.log.info({ activeLimit: this.activeLimit }, "queue started");
    if (this.leases !== undefined) this.startKeeper(this.leases);
    this.recovery = this.recover();
    this.background(this.recovery);
    this.refill();
  }

  /** Resolves when every spooled message is known to the queue (start-up reconciliation done). */
  recovered(): Promise<void> {
    return this.recovery;
  }

  private async recover(): Promise<void> {
    try {
      if (this.deps.legacyStateDir !== undefined) {
        const n = await importLegacyStates(this.deps.legacyStateDir, this.deps.spool, this.store, (m) => this.deps.log.warn(m));
        if (n > 0) {
          this.deps.log.info({ messages: n }, "queue state moved from queue-state/*.json into the queue store");
          // Start's first claim ran before these were in the store: look again (and set the wake-up for the first of them).
          this.refill();
        }
      }
      if (this.keeper !== null) {
        // A cluster: one node at a time (never the queue tools); at a start, unless another node is at it.
        await this.keeper.reconcileIfTurn(true);
        return;
      }
      await this.reconcileSpool();
    } catch (err) {
      this.deps.log.error({ err }, "could not reconcile the spool with the queue store");
    } finally {
      this.seen = null;
    }
  }

  /** Queue what the spool holds and the store does not know; false when stopped before the end. */
  private async reconcileSpool(): Promise<boolean> {
    const seen = this.seen;
    const admit = (id: QueueId) => this.admitNew(id).then(() => this.dispatch(), (err) => {
      this.deps.log.error({ queueId: id, err }, "could not queue message");
    });
    const started = Date.now();
    const admitted = await reconcile(this.deps.spool, this.store, (id) => this.messages.has(id) || seen?.has(id) === true, admit, () => this.stopped);
    if (admitted > 0) this.deps.log.info({ messages: admitted }, "spooled messages the queue store did not know were queued again");
    this.deps.log.info({ ms: Date.now() - started }, "queue recovered");
    return !this.stopped;
  }

  /** A cluster: renew this node's leases, hand on what was lost or asked, and take turns at the cluster's chores. */
  private startKeeper(leases: Leases): void {
    this.keeper = new LeaseKeeper({
      leases, clock: this.deps.clock, log: this.deps.log, slots: this.deps.slots,
      reconcileInterval: this.deps.reconcileInterval ?? 300_000,
      hooks: {
        held: () => [...this.messages.values()].filter((e) => e.stored && !e.leaving).map((e) => e.state.id),
        lost: (id) => {
          const e = this.messages.get(id);
          if (e !== undefined && !e.leaving) this.drop(e, "lease ended and another node took the message");
        },
        request: (id, op) => this.background(this.requested(id, op)),
        inUse: () => this.inFlight,
        tick: () => {
          for (const id of [...this.unqueued]) {
            this.unqueued.delete(id);
            this.enqueue(id);
          }
          for (const e of [...this.unfinished]) {
            this.unfinished.delete(e);
            this.background(this.finishIfDone(e));
          }
          this.refill();
        },
        ...(this.started ? {
          reconcile: () => {
            const p = this.reconcileSpool();
            this.background(p);
            return p;
          },
        } : {}),
      },
    });
    if (this.deps.slots !== undefined) this.deps.slots.granted = () => this.dispatch();
    this.keeper.start();
  }

  /** What a person asked, through the store, of a message this node holds (`petrel queue` on another host). */
  private async requested(id: QueueId, op: QueueRequestOp): Promise<void> {
    const by = "petrel queue (cluster)";
    if (op === "hold") await this.hold(id, by);
    else if (op === "release") await this.release(id, by);
    else if (op === "delete") await this.delete(id, by);
    else await this.retry(id, by);
  }

  /**
   * A cluster: out of memory without a word to the store — another node has
   * the message now (its lease ended), or its state could not be written
   * before a DSN; whatever is in flight finishes without effect, and the
   * message is delivered from the store's state by whoever holds it next.
   */
  private drop(e: Entry, why: string): void {
    e.leaving = true;
    if (this.messages.get(e.state.id) === e) this.messages.delete(e.state.id);
    this.deps.log.warn({ queueId: e.state.id }, `dropped from memory: ${why}`);
    this.refill();
  }

  /** A message was just committed to the spool. */
  enqueue(id: QueueId): void {
    this.seen?.add(id);
    this.background(this.admitNew(id).then(() => this.dispatch(), (err) => {
      this.deps.log.error({ queueId: id, err }, "could not queue message");
      // A cluster: the message is in the shared spool; queue it when the database answers again.
      if (this.leases !== undefined && !this.stopped) this.unqueued.add(id);
    }));
  }

  private background(p: Promise<unknown>): void {
    const q = p.then(() => {}, () => {});
    this.pendingEnqueues.add(q);
    void q.finally(() => this.pendingEnqueues.delete(q));
  }

  /** Stop starting deliveries; wait for those in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.deps.inflow?.releaseAll();
    if (this.timer !== null) this.deps.clock.cancel(this.timer);
    this.timer = null;
    await this.keeper?.stop();
    await this.settled();
    await this.deps.slots?.close();
    await this.store.close();
  }

  private async settled(): Promise<void> {
    while (this.pendingEnqueues.size > 0 || this.running.size > 0) {
      await Promise.race([...this.pendingEnqueues, ...this.running]);
    }
  }

  /** Resolves when nothing is in flight and nothing is due now (tests). */
  async idle(): Promise<void> {
    await this.settled();
  }

  /** Sessions waiting at MAIL for the queue to catch up now (inflow.ts; status, tests). */
  get pacedSessions(): number {
    return this.deps.inflow?.waiting ?? 0;
  }

  /** Messages in memory now, and how many may be (tests, status). */
  get activeCount(): number {
    return this.messages.size;
  }

  /**
   * A reload: what is dispatched from now on goes by the new transport map
   * and settings; deliveries in flight finish on the agents they started
   * with. Resolves once those have (their agents may then be closed).
   */
  reconfigure(changes: { router?: Router; settings?: QueueSettings }): Promise<void> {
    const inFlight = Promise.all(this.running).then(() => undefined);
    this.deps = { ...this.deps, ...changes };
    if (changes.settings?.inflowDelay !== undefined) this.deps.inflow?.setDelay(changes.settings.inflowDelay);
    if (changes.router) {
      // Every waiting recipient is routed again: ready queues are rebuilt from the messages.
      this.routes = new WeakMap();
      this.ready.clear();
      this.destinations.length = 0;
      const now = this.deps.clock.now();
      for (const e of this.messages.values()) if (!e.leaving) this.schedule(e, now);
    }
    this.dispatch();
    return inFlight;
  }

  // ------------------------------------------------------------ operations

  /** Every message, oldest first: for small queues and tests (the tools page with `page`). */
  async list(): Promise<QueueListItem[]> {
    const out: QueueListItem[] = [];
    let after: QueueId | null = null;
    for (;;) {
      const p: QueuePage = await this.page(after, 1000);
      out.push(...p.items);
      if (p.next === null) return out;
      after = p.next;
    }
  }

  /** Messages after `after` in queue id (arrival) order, at most `limit`. */
  page(after: QueueId | null, limit: number): Promise<QueuePage> {
    return listPage(this.store, this.inMemory(), after, limit, this.leases !== undefined ? this.deps.node : undefined);
  }

  summary(now = this.deps.clock.now()): Promise<SummaryRow[]> {
    return summary(this.store, this.inMemory().values(), now);
  }

  totals(now = this.deps.clock.now()): Promise<QueueTotals> {
    return totals(this.store, this.inMemory().values(), now, { limit: this.activeLimit, peak: this.activePeak });
  }

  private inMemory(): Map<QueueId, Entry> {
    const out = new Map<QueueId, Entry>();
    for (const [id, e] of this.messages) if (!e.leaving) out.set(id, e);
    return out;
  }

  async get(id: QueueId): Promise<{ item: QueueListItem; envelope: Envelope; history: Record<string, RecipientState["history"]> } | null> {
    const e = this.messages.get(id);
    let found: { state: MessageState; envelope: Envelope; node?: string | undefined } | null = null;
    if (e !== undefined) {
      if (e.leaving) return null;
      found = { state: e.state, envelope: e.envelope, node: this.leases !== undefined ? this.deps.node : undefined };
    } else {
      const stored = await this.store.get(id);
      const envelope = stored ? await this.deps.spool.readEnvelope(id).catch(() => null) : null;
      if (stored && envelope) found = { state: stored.state, envelope, node: stored.holder };
    }
    if (found === null) return null;
    const history: Record<string, RecipientState["history"]> = {};
    for (const r of found.state.recipients) history[r.address] = r.history;
    return { item: listItem(entryView(found.state, found.envelope), found.node), envelope: found.envelope, history };
  }

  /**
   * Make waiting recipients due now (`postqueue -i` / `-f`). A held message
   * is left alone (as `postqueue -f` does): hold wins until release. Null
   * when `id` is no message in the queue.
   */
  async retry(id: QueueId | "all", by?: string): Promise<RetryResult | null> {
    const result = await this.retryHere(id, by);
    if (result === null && id !== "all" && (await this.viaHolder(id, "retry"))) return { scheduled: 1, held: [] };
    return result;
  }

  private async retryHere(id: QueueId | "all", by?: string): Promise<RetryResult | null> {
    const result = await this.serially(async (): Promise<RetryResult | null> => {
      const now = this.deps.clock.now();
      const held: QueueId[] = [];
      let scheduled = 0;
      const entries = id === "all" ? [...this.messages.values()] : [await this.bringIn(id)].filter((e) => e !== null);
      if (id !== "all" && entries.length === 0) return null;
      for (const e of entries) {
        if (e.leaving) continue;
        if (e.state.held) {
          held.push(e.state.id);
        } else {
          const waiting = e.state.recipients.filter((r) => r.status === "deferred" || r.status === "queued");
          if (waiting.length > 0) {
            for (const r of waiting) r.nextAttempt = now;
            this.events.emit({ type: "admin", queueId: e.state.id, action: "retry", ...(by ? { by } : {}) });
            this.save(e);
            scheduled++;
          }
        }
        this.settle(e);
      }
      if (id === "all") {
        const rest = await this.store.retryAll(now);
        scheduled += rest.scheduled;
        held.push(...rest.held);
      }
      return { scheduled, held };
    });
    this.refill();
    this.dispatch();
    return result;
  }

  /** `postsuper -h`: no delivery attempts until released. */
  async hold(id: QueueId, by?: string): Promise<boolean> {
    return (await this.setHeld(id, true, by)) || this.viaHolder(id, "hold");
  }

  async release(id: QueueId, by?: string): Promise<boolean> {
    const ok = (await this.setHeld(id, false, by)) || (await this.viaHolder(id, "release"));
    this.refill();
    this.dispatch();
    return ok;
  }

  /** `postsuper -d`: remove without a bounce. */
  async delete(id: QueueId, by?: string): Promise<boolean> {
    return (await this.deleteHere(id, by)) || this.viaHolder(id, "delete");
  }

  private async deleteHere(id: QueueId, by?: string): Promise<boolean> {
    const done = await this.serially(async () => {
      const e = this.messages.get(id);
      if (e !== undefined && !e.leaving) {
        e.leaving = true;
        await e.saving;
        await this.deps.spool.remove(id);
        await this.store.remove(id, { durable: true });
        this.messages.delete(id);
        return true;
      }
      if (e !== undefined || (await this.store.claim(id)) === null) return false;
      await this.deps.spool.remove(id).catch((err: { code?: string }) => {
        if (err.code !== "ENOENT") throw err;
      });
      await this.store.remove(id, { durable: true });
      return true;
    });
    if (done) {
      this.deps.log.info({ queueId: id }, "deleted by administrator");
      this.events.emit({ type: "admin", queueId: id, action: "delete", ...(by ? { by } : {}) });
    }
    this.refill();
    return done;
  }

  private async setHeld(id: QueueId, held: boolean, by?: string): Promise<boolean> {
    return this.serially(async () => {
      const e = await this.bringIn(id);
      if (e === null) return false;
      e.state.held = held;
      this.events.emit({ type: "admin", queueId: id, action: held ? "hold" : "release", ...(by ? { by } : {}) });
      // A person decided now: the reason a check gave no longer holds.
      delete e.state.holdReason;
      await this.save(e, true);
      this.deps.log.info({ queueId: id }, held ? "held" : "released");
      this.settle(e);
      return true;
    });
  }

  /**
   * A cluster: a person's operation on a message another live node holds is
   * that node's to do (it has the message in memory; doing it here would race
   * its deliveries): asked through the store, picked up at its next renewal,
   * waited for here up to two lease times. False when no node holds `id`.
   */
  private async viaHolder(id: QueueId, op: QueueRequestOp): Promise<boolean> {
    const leases = this.leases;
    if (leases === undefined) return false;
    const holder = await leases.request(id, op);
    if (holder === null) return false;
    const clock = this.deps.clock;
    const end = clock.now() + 2 * leases.ms;
    while (await leases.requestPending(id)) {
      if (clock.now() > end) throw new Error(`node ${holder} holds message ${id} and has not taken the ${op} request within ${Math.round((2 * leases.ms) / 1000)} s (is it stopped?); the request stays for it`);
      await new Promise<void>((resolve) => clock.schedule(resolve, Math.max(10, Math.min(250, leases.ms / 12))));
    }
    this.deps.log.info({ queueId: id, node: holder, op }, "done by the node holding the message");
    return true;
  }

  /** One store → memory move at a time (see `exclusive`). */
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.exclusive.then(fn);
    this.exclusive = p.catch(() => {});
    return p;
  }

  /** The message in memory, claimed from the store if need be (for a person's operation on it); null when the queue has no such message. */
  private async bringIn(id: QueueId): Promise<Entry | null> {
    const e = this.messages.get(id);
    if (e !== undefined) return e.leaving ? null : e;
    const row = await this.store.claim(id);
    if (row === null) return null;
    return this.admitClaimed(row, true);
  }

  // --------------------------------------------------------------- loading

  /** A new message: fan it out and take it into memory — or, when memory is full, into the store to wait its turn. */
  private async admitNew(id: QueueId): Promise<void> {
    if (this.messages.has(id)) return;
    const envelope = await this.deps.spool.readEnvelope(id);
    const now = this.deps.clock.now();
    const recipients = await fanOut(envelope, this.deps.resolve, now, this.deps.maxReceived);
    if (this.messages.has(id)) return;
    // Quarantined at the end of data: on hold until a person releases it (Postfix HOLD).
    const quarantined = envelope.hold !== undefined;
    const state: MessageState = { id, arrival: envelope.receivedAt || now, held: quarantined, ...(quarantined ? { holdReason: envelope.hold } : {}), recipients };
    const entry = newEntry(state, envelope, false);
    if (this.leases !== undefined) {
      // A cluster: every node sees the shared spool, so the message is this node's only once its row is (another may have taken it).
      if (!(await this.leases.adopt(entryView(state, envelope)))) return;
      entry.stored = true;
      // Another node may have delivered it and removed it whole (spool, then row) before this row was made: then it is gone.
      if (!(await this.stillSpooled(id))) {
        await this.store.remove(id);
        return;
      }
      if (this.messages.has(id)) return;
    }
    const inMemory = this.messages.size < this.activeLimit;
    if (inMemory) this.keep(entry);
    this.deps.log.info({ queueId: id, recipients: recipients.map((r) => r.address), ...(quarantined ? { held: envelope.hold } : {}) }, "queued");
    this.events.emit({ type: "queued", queueId: id, recipients: recipients.map((r) => ({ address: r.address, original: r.original, status: r.status })) });
    // Nothing has happened yet that the envelope cannot tell again after a
    // restart, so nothing is stored until something does (a bounce, a deferral).
    const unknown = recipients.filter((r) => r.status === "bounced");
    if (unknown.length > 0) {
      await this.save(entry, true);
      if (entry.leaving) return;
      await this.dsn(entry, unknown.map((r) => this.dsnRecipient(entry, r, "failed", r.lastError?.enhanced ?? "5.1.1", r.lastError?.diagnostic)));
    }
    await this.finishIfDone(entry);
    if (inMemory) this.settle(entry);
    else if (!entry.leaving) this.evict(entry);
  }

  /**
   * A message claimed from the store, into memory; null when there is no
   * room after all (it goes back, unclaimed) — unless `force`d (a person acts
   * on it) — or when its message is no longer spooled (its state is dropped).
   */
  private async admitClaimed(row: StoredMessage, force = false): Promise<Entry | null> {
    const id = row.state.id;
    this.seen?.add(id);
    let envelope: Envelope;
    try {
      envelope = await this.deps.spool.readEnvelope(id);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "ENOENT" && code !== "ECORRUPT") {
        // Not readable now (an I/O error): leave it for a later claim.
        this.deps.log.error({ queueId: id, err }, "could not read a queued message");
        await this.unclaim(row);
        return null;
      }
      this.deps.log.warn({ queueId: id, err: (err as Error).message }, "queue state without its message in the spool: dropped");
      await this.store.remove(id);
      return null;
    }
    if (!force && this.messages.size >= this.activeLimit) {
      await this.unclaim(row);
      return null;
    }
    const entry = newEntry(row.state, envelope, true);
    this.keep(entry);
    // Every recipient final: its node stopped between the last state and the removal (a cluster's node died); finish it.
    if (row.state.recipients.every(isFinal)) this.background(this.finishIfDone(entry));
    return entry;
  }

  private async stillSpooled(id: QueueId): Promise<boolean> {
    try {
      await this.deps.spool.readEnvelope(id);
      return true;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "ENOENT") return false;
      throw err;
    }
  }

  /** A claimed row back to waiting, unclaimed (a row another node took meanwhile is that node's). */
  private async unclaim(row: StoredMessage): Promise<void> {
    await this.store.save(row, { claimed: false }).catch((err) => {
      if (!(err instanceof LeaseLost)) throw err;
    });
  }

  /** Into the active set. */
  private keep(e: Entry): void {
    this.messages.set(e.state.id, e);
    if (this.messages.size > this.activePeak) this.activePeak = this.messages.size;
  }

  /** Write the message's state (the store copies it at once); `durable` before a DSN or for a person's decision. */
  private save(e: Entry, durable = false): Promise<void> {
    e.stored = true;
    e.saving = this.store.save(entryView(e.state, e.envelope), { claimed: true, durable }).catch((err) => {
      if (err instanceof LeaseLost) return this.drop(e, "another node holds the message now");
      this.deps.log.error({ queueId: e.state.id, err }, "could not save queue state");
      // A cluster: a state a DSN was to report is not stored, so no DSN goes — whoever holds the message next tries again from what is stored.
      if (this.leases !== undefined && durable) this.drop(e, "its state could not be stored");
    });
    return e.saving;
  }

  // ------------------------------------------------------- the active set

  /**
   * After anything happened to a message in memory: when nothing of it is
   * due now or in flight, it leaves memory for the store; when something is,
   * it goes where dispatch finds it.
   */
  private settle(e: Entry): void {
    if (this.messages.get(e.state.id) !== e || e.leaving || e.jobs > 0) return;
    if (e.state.recipients.every(isFinal)) return; // finishIfDone removes it
    const now = this.deps.clock.now();
    const due = e.state.recipients.some((r) => (r.status === "queued" || r.status === "deferred") && r.nextAttempt <= now);
    if (this.started && !this.stopped && !e.state.held && due && this.messages.size <= this.activeLimit) {
      this.schedule(e, now);
      return;
    }
    this.evict(e);
  }

  /** Whether `settle` will send the message to the store once this delivery (its only one in flight) ends. */
  private leavesMemory(e: Entry, now: number): boolean {
    if (e.jobs > 1) return false;
    if (e.state.held || !this.started || this.stopped) return true;
    return !e.state.recipients.some((r) => (r.status === "queued" || r.status === "deferred") && r.nextAttempt <= now);
  }

  /** Into the store, out of memory; the room goes to the next due message. */
  private evict(e: Entry): void {
    const id = e.state.id;
    if (this.messages.get(id) === e) this.messages.delete(id);
    e.stored = true;
    e.saving = this.store.save(entryView(e.state, e.envelope), { claimed: false }).catch((err) => {
      if (!(err instanceof LeaseLost)) this.deps.log.error({ queueId: id, err }, "could not save queue state");
    });
    this.background(e.saving);
    if (!e.state.held) {
      let next = Infinity;
      for (const r of e.state.recipients) if (r.status === "queued" || r.status === "deferred") next = Math.min(next, r.nextAttempt);
      this.wake(next);
    }
    this.refill();
  }

  /** Claim due messages from the store while there is room (one claimer at a time). */
  private refill(): void {
    if (!this.started || this.stopped) return;
    if (this.refilling) {
      this.refillAgain = true;
      return;
    }
    this.refilling = true;
    this.background(this.serially(() => this.claimWhileRoom()).finally(() => {
      this.refilling = false;
      if (this.refillAgain) {
        this.refillAgain = false;
        this.refill();
      }
      this.dispatch();
    }));
  }

  private async claimWhileRoom(): Promise<void> {
    for (;;) {
      this.refillAgain = false;
      const room = this.activeLimit - this.messages.size;
      if (room <= 0 || this.stopped) return;
      const want = Math.min(room, CLAIM_BATCH);
      const now = this.deps.clock.now();
      // Never-tried and deferred mail take turns at the head of each claim; either fills what the other leaves.
      const [one, other] = this.incomingFirst ? (["incoming", "deferred"] as const) : (["deferred", "incoming"] as const);
      this.incomingFirst = !this.incomingFirst;
      const half = Math.ceil(want / 2);
      const a = await this.store.claimDue(one, now, half);
      const b = await this.store.claimDue(other, now, want - a.length);
      const c = a.length === half && a.length + b.length < want ? await this.store.claimDue(one, now, want - a.length - b.length) : [];
      const rows = [...a, ...b, ...c];
      const entries = await Promise.all(rows.map((row) => this.admitClaimed(row)));
      for (const e of entries) if (e !== null) this.settle(e);
      this.dispatch();
      if (rows.length < want) {
        const next = await this.store.nextDue();
        if (next !== null) this.wake(next);
        return;
      }
    }
  }

  /** Have the timer fire by `at` (when a stored message falls due). */
  private wake(at: number): void {
    if (this.stopped || at === Infinity || (this.timer !== null && this.timerAt <= at)) return;
    if (this.timer !== null) this.deps.clock.cancel(this.timer);
    this.timerAt = at;
    this.timer = this.deps.clock.schedule(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.refill();
    }, Math.max(0, at - this.deps.clock.now()));
  }

  // -------------------------------------------------------------- dispatch

  /** Put a message's due recipients into their destinations' ready queues. */
  private schedule(e: Entry, now: number): void {
    if (!this.started || e.state.held || this.messages.get(e.state.id) !== e) return;
    for (const r of e.state.recipients) {
      if ((r.status !== "queued" && r.status !== "deferred") || r.nextAttempt > now) continue;
      const route = this.routeOf(r);
      let q = this.ready.get(route.destination);
      if (!q) {
        this.ready.set(route.destination, (q = { route, ids: [], members: new Set() }));
        this.destinations.push(route.destination);
      }
      if (!q.members.has(e.state.id)) {
        q.members.add(e.state.id);
        q.ids.push(e.state.id);
      }
    }
  }

  private routeOf(r: RecipientState): Route {
    let route = this.routes.get(r);
    if (!route) this.routes.set(r, (route = this.deps.router!.route(r.address, r.kind)));
    return route;
  }

  /** Start as many due deliveries as the limits allow, fairly. Cost: O(deliveries started). */
  private dispatch(): void {
    if (!this.started || this.stopped) return;
    const now = this.deps.clock.now();
    const s = this.deps.settings;
    let blocked = 0;
    while (this.active < s.concurrency && this.destinations.length > 0 && blocked < this.destinations.length) {
      const k = this.rr % this.destinations.length;
      const dest = this.destinations[k];
      const q = this.ready.get(dest);
      if (!q || q.ids.length === 0) {
        this.destinations.splice(k, 1);
        this.ready.delete(dest);
        continue;
      }
      const busy = this.inFlight.get(dest) ?? 0;
      if (busy >= s.perDestination || (this.deps.slots !== undefined && busy >= this.deps.slots.held(dest))) {
        // A cluster: the limit holds across the nodes; ask for more of its slots (dispatch runs again when granted).
        if (busy < s.perDestination) this.deps.slots!.grow(dest, busy + q.ids.length, s.perDestination);
        this.rr++;
        blocked++;
        continue;
      }
      const id = q.ids.shift()!;
      q.members.delete(id);
      const e = this.messages.get(id);
      if (!e || e.state.held || e.leaving) continue;
      if (this.expire(e, now)) continue;
      const due = e.state.recipients.filter((r) => (r.status === "queued" || r.status === "deferred") && r.nextAttempt <= now && this.routeOf(r).destination === dest);
      if (due.length === 0) continue;
      const batch = due.slice(0, s.recipientsPerDelivery);
      this.run({ msg: e, route: q.route, recipients: batch });
      if (due.length > batch.length) {
        // More of this message for this destination: back of the line.
        q.members.add(id);
        q.ids.push(id);
      }
      this.rr++;
      blocked = 0;
    }
    if (this.keepingUp()) this.deps.inflow?.fill();
  }

  /** Nothing due waits for a delivery slot: the queue keeps up, arrivals need not wait (inflow.ts). */
  private keepingUp(): boolean {
    return this.destinations.length === 0 && this.messages.size < this.activeLimit;
  }

  private run(job: Job): void {
    const dest = job.route.destination;
    this.active++;
    job.msg.jobs++;
    this.inFlight.set(dest, (this.inFlight.get(dest) ?? 0) + 1);
    for (const r of job.recipients) r.status = "delivering";
    // Mail taken in for delivery: one more new message may be accepted without waiting.
    this.deps.inflow?.put(1);
    const id = job.msg.state.id;
    const started = this.deps.clock.now();
    const p = (async () => {
      let outcomes: DeliveryOutcomes;
      try {
        outcomes = await job.route.agent.deliver({
          queueId: id,
          envelope: job.msg.envelope,
          recipients: job.recipients.map((r) => r.address),
          originalRecipients: new Map(job.recipients.map((r) => [r.address, r.original])),
          body: () => this.message(job.msg),
        });
      } catch (err) {
        this.deps.log.error({ queueId: id, err }, "delivery agent failed");
        outcomes = new Map(job.recipients.map((r) => [r.address, { status: "deferred" as const, enhanced: "4.3.0", diagnostic: `internal error: ${String(err)}` }]));
      }
      await this.applyOutcomes(job, outcomes, started);
    })().finally(() => {
      this.active--;
      job.msg.jobs--;
      const n = (this.inFlight.get(dest) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(dest);
      else this.inFlight.set(dest, n);
      this.running.delete(p);
      this.settle(job.msg);
      this.dispatch();
      // A cluster: slots this node no longer needs for the destination go back to the others now.
      if (this.deps.slots !== undefined && !(this.ready.get(dest)?.ids.length)) this.deps.slots.shrink(dest, this.inFlight.get(dest) ?? 0);
    });
    this.running.add(p);
  }

  // -------------------------------------------------------------- outcomes

  private async applyOutcomes(job: Job, outcomes: DeliveryOutcomes, started: number): Promise<void> {
    const e = job.msg;
    const now = this.deps.clock.now();
    const failed: DsnRecipient[] = [];
    const succeeded: DsnRecipient[] = [];
    for (const r of job.recipients) {
      const o: DeliveryOutcome = outcomes.get(r.address) ?? { status: "deferred", enhanced: "4.3.0", diagnostic: `the ${job.route.transport} delivery agent gave no outcome for this recipient` };
      r.attempts++;
      r.history.push({ at: now, status: o.status, ...(o.status !== "delivered" ? { enhanced: o.enhanced, diagnostic: o.diagnostic } : {}) });
      if (r.history.length > HISTORY_LIMIT) r.history.splice(0, r.history.length - HISTORY_LIMIT);
      const log = { queueId: e.state.id, to: r.address, orig: r.original !== r.address ? r.original : undefined, transport: job.route.transport, attempts: r.attempts };
      if (o.status === "delivered") {
        r.status = "delivered";
        this.deps.log.info({ ...log, status: "delivered", detail: o.detail, remoteMta: o.remoteMta, dsn: o.dsn }, "delivered");
        // RFC 3461: who reports a success is the agent's finding (delivery/outcome.ts); "passed" means the next hop does.
        if (o.dsn !== "passed") succeeded.push(this.dsnRecipient(e, r, o.dsn === "final" ? "delivered" : "relayed", "2.0.0", o.detail, o.remoteMta));
      } else if (o.status === "failed") {
        r.status = "bounced";
        r.lastError = { enhanced: o.enhanced, diagnostic: o.diagnostic, at: now, ...(o.remoteMta ? { remoteMta: o.remoteMta } : {}) };
        this.deps.log.info({ ...log, status: "bounced", enhanced: o.enhanced, diagnostic: o.diagnostic }, "bounced");
        failed.push(this.dsnRecipient(e, r, "failed", o.enhanced, o.diagnostic, o.remoteMta));
      } else {
        r.lastError = { enhanced: o.enhanced, diagnostic: o.diagnostic, at: now, ...(o.remoteMta ? { remoteMta: o.remoteMta } : {}), ...(o.bounceStatus ? { bounceStatus: o.bounceStatus } : {}) };
        r.status = "deferred";
        // Never wait past the expiry: the message is looked at (and bounced) then.
        r.nextAttempt = Math.min(now + retryDelay(r.attempts, this.deps.settings, this.random), Math.max(now, e.state.arrival + this.lifetime(e)));
        this.deps.log.info({ ...log, status: "deferred", enhanced: o.enhanced, diagnostic: o.diagnostic, retryAt: new Date(r.nextAttempt).toISOString() }, "deferred");
      }
      this.events.emit({
        type: "delivery", queueId: e.state.id, recipient: r.address, ...(r.original !== r.address ? { original: r.original } : {}),
        transport: job.route.transport, destination: job.route.destination, status: r.status === "delivered" ? "delivered" : r.status === "bounced" ? "bounced" : "deferred",
        ...(o.status !== "delivered" ? { enhanced: o.enhanced, reply: o.diagnostic } : o.detail ? { reply: o.detail } : {}),
        ...(o.remoteMta ? { remoteMta: o.remoteMta } : {}), ...(o.remoteAddress ? { remoteAddress: o.remoteAddress } : {}), ...(o.tls ? { tls: o.tls } : {}),
        durationMs: now - started, attempt: r.attempts,
        ...(o.status === "delivered" ? { latencyMs: now - e.state.arrival } : {}),
        ...(o.status === "deferred" ? { retryAt: new Date(r.nextAttempt).toISOString() } : {}),
      });
    }
    // Deleted meanwhile (`petrel queue delete`): nothing more to do or tell.
    if (e.leaving) return;
    // A message now complete is removed below; saving it first would only
    // cost a write — unless a DSN is about to be sent, whose recipients must
    // not bounce again after a crash. A message about to leave memory is
    // saved as it goes (settle).
    if (failed.length > 0) await this.save(e, true);
    else if (!e.state.recipients.every(isFinal) && !this.leavesMemory(e, now)) this.save(e);
    // Lost to another node while it was saved: that node tells the sender, never both.
    if (e.leaving) return;
    if (failed.length > 0) await this.dsn(e, failed);
    // RFC 3461 §4.1: a success DSN only for recipients that asked for one (dsnRecipients filters).
    if (succeeded.length > 0) await this.dsn(e, succeeded);
    await this.delayWarnings(e, now);
    await this.finishIfDone(e);
  }

  /**
   * A message past the queue lifetime: its waiting recipients bounce (RFC
   * 3463 X.4.7, delivery time expired). Checked when the message is next
   * due; deferrals never wait past the expiry time.
   */
  private expire(e: Entry, now: number): boolean {
    if (now - e.state.arrival < this.lifetime(e)) return false;
    const expired = e.state.recipients.filter((r) => r.status === "deferred" || r.status === "queued");
    if (expired.length === 0) return false;
    const failed = expired.map((r) => {
      r.status = "bounced";
      const last = r.lastError?.diagnostic ?? "no delivery attempt succeeded";
      this.deps.log.info({ queueId: e.state.id, to: r.address, status: "expired" }, "bounced");
      this.events.emit({ type: "expired", queueId: e.state.id, recipient: r.address, reply: `message expired in the queue; last error: ${last}` });
      return this.dsnRecipient(e, r, "failed", r.lastError?.bounceStatus ?? "4.4.7", `message expired in the queue; last error: ${last}`, r.lastError?.remoteMta);
    });
    e.jobs++;
    this.background(this.save(e, true).then(() => e.leaving ? undefined : this.dsn(e, failed).then(() => this.finishIfDone(e))).finally(() => {
      e.jobs--;
      this.settle(e);
    }));
    return true;
  }

  private lifetime(e: Entry): number {
    return e.envelope.mailFrom === "" ? this.deps.settings.bounceLifetime : this.deps.settings.lifetime;
  }

  private async delayWarnings(e: Entry, now: number): Promise<void> {
    const after = this.deps.settings.delayWarning;
    if (after <= 0 || now - e.state.arrival < after) return;
    const due = e.state.recipients.filter((r) => r.status === "deferred" && !r.delayWarned);
    if (due.length === 0) return;
    for (const r of due) r.delayWarned = true;
    await this.save(e, true);
    if (e.leaving) return;
    const until = new Date(e.state.arrival + this.deps.settings.lifetime);
    await this.dsn(e, due.map((r) => ({
      ...this.dsnRecipient(e, r, "delayed", r.lastError?.enhanced ?? "4.0.0", r.lastError?.diagnostic, r.lastError?.remoteMta),
      willRetryUntil: until,
    })));
  }

  private dsnRecipient(e: Entry, r: RecipientState, action: DsnRecipient["action"], status: string, diagnostic?: string, remoteMta?: string): DsnRecipient {
    const rcpt = e.envelope.recipients.find((x) => x.address === r.original);
    return {
      address: r.original,
      ...(rcpt?.orcpt ? { orcpt: rcpt.orcpt } : {}),
      action,
      status,
      ...(diagnostic ? { diagnostic } : {}),
      ...(remoteMta ? { remoteMta } : {}),
      lastAttempt: new Date(this.deps.clock.now()),
    };
  }

  private async dsn(e: Entry, all: DsnRecipient[]): Promise<void> {
    if (e.envelope.mailFrom === "" && all.some((r) => r.action === "failed")) {
      // RFC 5321 §4.5.5 / §6.1: a bounce that cannot be delivered is never bounced again.
      this.deps.log.warn({ queueId: e.state.id, to: all.map((r) => r.address) }, "undeliverable bounce discarded (double bounce)");
    }
    const recipients = all.filter((r) => wantsDsn(e.envelope, r));
    if (recipients.length === 0) return;
    try {
      // The DSN enters through the intake, which tells the queue about it.
      const id = await this.deps.sendDsn(e.state.id, e.envelope, new Date(e.state.arrival), recipients, () => this.message(e));
      if (id) {
        this.deps.log.info({ queueId: e.state.id, dsn: id, action: recipients[0].action }, "sender notified");
        this.events.emit({ type: "dsn", queueId: e.state.id, dsnId: id, action: recipients[0].action, recipients: recipients.map((r) => r.address) });
      }
    } catch (err) {
      // Not fatal: the recipients' states are final either way; the log has it.
      this.deps.log.error({ queueId: e.state.id, err }, "could not create DSN");
    }
  }

  /** The message as stored, header decisions applied: what agents carry and a DSN returns. */
  private message(e: Entry): Readable {
    return storedMessage(e.envelope, this.deps.spool.readBody(e.state.id));
  }

  /**
   * Every recipient final: the message leaves the spool, then its state the
   * store (a crash between leaves a state without a message, dropped when
   * next read — never a message without its state, which would be delivered
   * again), then memory.
   */
  private async finishIfDone(e: Entry): Promise<void> {
    const id = e.state.id;
    if (!e.state.recipients.every(isFinal) || e.leaving) return;
    if (this.messages.has(id) && this.messages.get(id) !== e) return;
    e.leaving = true;
    await e.saving;
    let again = false;
    try {
      if (this.leases !== undefined) {
        // A cluster: the spool is shared — the final state is written, if this node still holds the message, before the message goes.
        const stored = await this.store.save(entryView(e.state, e.envelope), { claimed: true, durable: true }).then(() => "yes" as const, (err) => {
          if (err instanceof LeaseLost) return "lost" as const;
          this.deps.log.error({ queueId: id, err }, "done, but the final state could not be stored: tried again at the next lease renewal");
          return "retry" as const;
        });
        if (stored === "lost") this.deps.log.warn({ queueId: id }, "done here, but another node holds the message now: left to it");
        if (stored === "retry") {
          // The database is away: the message stays in memory (leased, renewed once it is back) so the delivery is not repeated.
          again = true;
          e.leaving = false;
          this.unfinished.add(e);
        }
        if (stored !== "yes") return;
      }
      try {
        await this.deps.spool.remove(id);
      } catch (err) {
        // The spool cannot let go of it now (its database away): the state, every recipient
        // final, stays with it; at worst a later start delivers it again — never lost, and no
        // rejection left for no one to handle.
        this.deps.log.error({ queueId: id, err }, "done, but not removed from the spool");
        if (this.leases !== undefined) {
          // A cluster: kept in memory under its lease, removed at the next renewal.
          again = true;
          e.leaving = false;
          this.unfinished.add(e);
          return;
        }
        await this.save(e, true);
        return;
      }
      if (e.stored) {
        await this.store.remove(id).catch((err) => {
          // The message is gone; a state left without it is dropped when next claimed (admitClaimed).
          this.deps.log.error({ queueId: id, err }, "removed from the spool, but its queue state could not be removed now");
        });
      }
      this.deps.log.info({ queueId: id }, "removed");
      this.events.emit({ type: "removed", queueId: id });
    } finally {
      if (!again && this.messages.get(id) === e) this.messages.delete(id);
      this.refill();
    }
  }
}

/** No write pending: one settled promise shared by every entry (20,000 in memory need not hold 20,000). */
const NOTHING_PENDING: Promise<void> = Promise.resolve();

function newEntry(state: MessageState, envelope: Envelope, stored: boolean): Entry {
  return { state, envelope, saving: NOTHING_PENDING, stored, jobs: 0, leaving: false, sender: envelope.mailFrom, size: envelope.size ?? envelope.declaredSize };
}

function entryView(state: MessageState, envelope: Envelope): StoredMessage {
  return { state, sender: envelope.mailFrom, size: envelope.size ?? envelope.declaredSize };
}

/**
 * RFC 3461 §4.1 and RFC 5321 §4.5.5: never notify the null sender (a bounce
 * is never bounced); NOTIFY=NEVER means no DSN; without NOTIFY, failures
 * and delays are reported; success only when asked for.
 */
export function wantsDsn(envelope: Envelope, r: DsnRecipient): boolean {
  if (envelope.mailFrom === "") return false;
  const notify = envelope.recipients.find((x) => x.address === r.address)?.notify;
  const want = r.action === "failed" ? "FAILURE" : r.action === "delayed" ? "DELAY" : "SUCCESS";
  if (!notify) return want !== "SUCCESS";
  return notify.includes(want);
}
