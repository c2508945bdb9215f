import type { Logger } from "pino";
import type { Readable } from "node:stream";
import type { Spool, QueueId } from "../spool/spool.ts";
import type { Envelope } from "../mail/envelope.ts";
import type { DeliveryOutcome, DeliveryOutcomes, DsnRecipient, DsnSender, RecipientResolver, Route, Router } from "./ports.ts";
import type { Clock } from "../mail/clock.ts";
import { retryDelay } from "./backoff.ts";
import { MinHeap } from "./min-heap.ts";
import { HISTORY_LIMIT, isFinal, QueueStateStore, type MessageState, type RecipientState } from "./queue-state.ts";
import { fanOut } from "./fan-out.ts";
import { storedMessage } from "../spool/stored-message.ts";
import { noEvents, type EventSink } from "../events/petrel-event.ts";

/**
 * The queue manager (Postfix's qmgr inside Petrel): takes each spooled
 * message, fans it out into per-recipient state, and drives every recipient
 * to a final state — delivered, or bounced with a DSN to the sender —
 * retrying temporary failures with backoff until the queue lifetime ends.
 * Agents carry mail; this decides when, how many at once, and what next.
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
}

export interface QueueManagerDeps {
  readonly spool: Spool;
  readonly state: QueueStateStore;
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
  /** Told what happens to each message (the message trace, metrics). */
  readonly events?: EventSink;
}

interface Job {
  readonly msg: Entry;
  readonly route: Route;
  readonly recipients: RecipientState[];
}

interface Entry {
  state: MessageState;
  envelope: Envelope;
  /** Serialises state saves for one message. */
  saving: Promise<void>;
}

/** What `retry` did: how many messages it made due now, and which it left alone because they are held. */
export interface RetryResult {
  readonly scheduled: number;
  readonly held: readonly QueueId[];
}

export interface QueueListItem {
  readonly id: QueueId;
  readonly arrival: number;
  readonly size: number | undefined;
  readonly sender: string;
  readonly held: boolean;
  /** Why a check put it on hold when it arrived (quarantine), while it stays held. */
  readonly heldReason?: string;
  readonly recipients: readonly {
    readonly address: string;
    readonly original: string;
    readonly status: string;
    readonly attempts: number;
    readonly nextAttempt: number;
    readonly lastError?: string;
  }[];
}

export class QueueManager {
  private deps: QueueManagerDeps;
  private readonly random: () => number;
  private readonly messages = new Map<QueueId, Entry>();
  private readonly inFlight = new Map<string, number>();
  private active = 0;
  private readonly running = new Set<Promise<void>>();
  private timer: unknown = null;
  private timerAt = Infinity;
  private started = false;
  private stopped = false;
  /** Background work (loading, expiry) that idle() and stop() wait for. */
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
  /** Recipients due later, by time (a message may appear more than once; stale entries are skipped). */
  private readonly later = new MinHeap<{ readonly at: number; readonly id: QueueId }>((x) => x.at);
  /** The route of each recipient, computed once. */
  private routes = new WeakMap<RecipientState, Route>();

  private readonly events: EventSink;

  constructor(deps: QueueManagerDeps) {
    this.deps = deps;
    this.random = deps.random ?? Math.random;
    this.events = deps.events ?? noEvents;
  }

  /**
   * Load every spooled message (restart recovery) and begin delivering.
   * Without a router (the queue tools when no server runs) it only loads,
   * so the queue can be listed and changed without delivering anything.
   */
  async start(): Promise<void> {
    await this.deps.state.open();
    const ids = await this.deps.spool.list();
    for (const id of ids) await this.load(id);
    // States whose message is gone (removed while we were down) are stale.
    const live = new Set(ids);
    for (const id of await this.deps.state.ids()) if (!live.has(id)) await this.deps.state.remove(id);
    this.started = this.deps.router !== undefined;
    if (this.started) this.deps.log.info({ messages: this.messages.size }, "queue started");
    const now = this.deps.clock.now();
    for (const e of this.messages.values()) this.schedule(e, now);
    this.dispatch();
  }

  /** A message was just committed to the spool. */
  enqueue(id: QueueId): void {
    this.background(this.load(id).then(() => this.dispatch(), (err) => this.deps.log.error({ queueId: id, err }, "could not queue message")));
  }

  private background(p: Promise<void>): void {
    this.pendingEnqueues.add(p);
    void p.finally(() => this.pendingEnqueues.delete(p));
  }

  /** Stop starting deliveries; wait for those in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) this.deps.clock.cancel(this.timer);
    this.timer = null;
    await Promise.all(this.pendingEnqueues);
    await Promise.all(this.running);
    await Promise.all([...this.messages.values()].map((e) => e.saving));
  }

  /** Resolves when nothing is in flight and nothing is due now (tests). */
  async idle(): Promise<void> {
    for (;;) {
      await Promise.all(this.pendingEnqueues);
      if (this.running.size === 0) {
        await Promise.all([...this.messages.values()].map((e) => e.saving));
        if (this.running.size === 0 && this.pendingEnqueues.size === 0) return;
      }
      await Promise.race(this.running);
    }
  }

  /**
   * A reload: what is dispatched from now on goes by the new transport map
   * and settings; deliveries in flight finish on the agents they started
   * with. Resolves once those have (their agents may then be closed).
   */
  reconfigure(changes: { router?: Router; settings?: QueueSettings }): Promise<void> {
    const inFlight = Promise.all(this.running).then(() => undefined);
    this.deps = { ...this.deps, ...changes };
    if (changes.router) {
      // Every waiting recipient is routed again: ready queues are rebuilt from the messages.
      this.routes = new WeakMap();
      this.ready.clear();
      this.destinations.length = 0;
      const now = this.deps.clock.now();
      for (const e of this.messages.values()) this.schedule(e, now);
    }
    this.dispatch();
    return inFlight;
  }

  // ------------------------------------------------------------ operations

  list(): QueueListItem[] {
    return [...this.messages.values()].map((e) => describe(e)).sort((a, b) => a.arrival - b.arrival);
  }

  get(id: QueueId): { item: QueueListItem; envelope: Envelope; history: Record<string, RecipientState["history"]> } | null {
    const e = this.messages.get(id);
    if (!e) return null;
    const history: Record<string, RecipientState["history"]> = {};
    for (const r of e.state.recipients) history[r.address] = r.history;
    return { item: describe(e), envelope: e.envelope, history };
  }

  /**
   * Make waiting recipients due now (`postqueue -i` / `-f`). A held message
   * is left alone (as `postqueue -f` does): hold wins until release. Null
   * when `id` is no message in the queue.
   */
  async retry(id: QueueId | "all", by?: string): Promise<RetryResult | null> {
    const entries = id === "all" ? [...this.messages.values()] : [this.messages.get(id)].filter((e) => e !== undefined);
    if (id !== "all" && entries.length === 0) return null;
    const now = this.deps.clock.now();
    const held: QueueId[] = [];
    let scheduled = 0;
    for (const e of entries) {
      if (e.state.held) {
        held.push(e.state.id);
        continue;
      }
      const waiting = e.state.recipients.filter((r) => r.status === "deferred" || r.status === "queued");
      if (waiting.length === 0) continue;
      for (const r of waiting) r.nextAttempt = now;
      this.events.emit({ type: "admin", queueId: e.state.id, action: "retry", ...(by ? { by } : {}) });
      this.schedule(e, now);
      await this.save(e);
      scheduled++;
    }
    this.dispatch();
    return { scheduled, held };
  }

  /** `postsuper -h`: no delivery attempts until released. */
  async hold(id: QueueId, by?: string): Promise<boolean> {
    return this.setHeld(id, true, by);
  }

  async release(id: QueueId, by?: string): Promise<boolean> {
    const ok = await this.setHeld(id, false, by);
    const e = this.messages.get(id);
    if (e) this.schedule(e, this.deps.clock.now());
    this.dispatch();
    return ok;
  }

  /** `postsuper -d`: remove without a bounce. */
  async delete(id: QueueId, by?: string): Promise<boolean> {
    const e = this.messages.get(id);
    if (!e) return false;
    this.messages.delete(id);
    this.events.emit({ type: "admin", queueId: id, action: "delete", ...(by ? { by } : {}) });
    await e.saving;
    await this.deps.spool.remove(id);
    await this.deps.state.remove(id);
    this.deps.log.info({ queueId: id }, "deleted by administrator");
    return true;
  }

  // --------------------------------------------------------------- loading

  private async load(id: QueueId): Promise<void> {
    if (this.messages.has(id)) return;
    const envelope = await this.deps.spool.readEnvelope(id);
    let state = await this.deps.state.load(id);
    if (!state) {
      const now = this.deps.clock.now();
      const recipients = await fanOut(envelope, this.deps.resolve, now, this.deps.maxReceived);
      // Quarantined at the end of data: on hold until a person releases it (Postfix HOLD).
      const quarantined = envelope.hold !== undefined;
      state = { id, arrival: envelope.receivedAt || now, held: quarantined, ...(quarantined ? { holdReason: envelope.hold } : {}), recipients };
      this.messages.set(id, { state, envelope, saving: Promise.resolve() });
      const entry = this.messages.get(id)!;
      this.deps.log.info({ queueId: id, recipients: recipients.map((r) => r.address), ...(quarantined ? { held: envelope.hold } : {}) }, "queued");
      this.events.emit({ type: "queued", queueId: id, recipients: recipients.map((r) => ({ address: r.address, original: r.original, status: r.status })) });
      // Nothing has happened yet that the envelope cannot tell again after a
      // restart, so no state file until something does (a bounce, a deferral).
      const unknown = recipients.filter((r) => r.status === "bounced");
      if (unknown.length > 0) {
        await this.save(entry);
        await this.dsn(entry, unknown.map((r) => this.dsnRecipient(entry, r, "failed", r.lastError?.enhanced ?? "5.1.1", r.lastError?.diagnostic)));
      }
      await this.finishIfDone(entry);
      this.schedule(entry, this.deps.clock.now());
      return;
    }
    const entry: Entry = { state, envelope, saving: Promise.resolve() };
    this.messages.set(id, entry);
    this.schedule(entry, this.deps.clock.now());
  }

  private save(e: Entry): Promise<void> {
    const snapshot = structuredClone(e.state);
    e.saving = e.saving.then(() => this.deps.state.save(snapshot)).catch((err) => {
      this.deps.log.error({ queueId: e.state.id, err }, "could not save queue state");
    });
    return e.saving;
  }

  private async setHeld(id: QueueId, held: boolean, by?: string): Promise<boolean> {
    const e = this.messages.get(id);
    if (!e) return false;
    e.state.held = held;
    this.events.emit({ type: "admin", queueId: id, action: held ? "hold" : "release", ...(by ? { by } : {}) });
    // A person decided now: the reason a check gave no longer holds.
    delete e.state.holdReason;
    await this.save(e);
    this.deps.log.info({ queueId: id }, held ? "held" : "released");
    return true;
  }

  // -------------------------------------------------------------- dispatch

  /**
   * Put a message's waiting recipients where dispatch finds them: due ones
   * into their destination's ready queue, later ones into the time heap.
   */
  private schedule(e: Entry, now: number): void {
    if (!this.started || e.state.held || this.messages.get(e.state.id) !== e) return;
    let next = Infinity;
    for (const r of e.state.recipients) {
      if (r.status !== "queued" && r.status !== "deferred") continue;
      if (r.nextAttempt > now) {
        next = Math.min(next, r.nextAttempt);
        continue;
      }
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
    if (next !== Infinity) this.later.push({ at: next, id: e.state.id });
  }

  private routeOf(r: RecipientState): Route {
    let route = this.routes.get(r);
    if (!route) this.routes.set(r, (route = this.deps.router!.route(r.address, r.kind)));
    return route;
  }

  /** Start as many due deliveries as the limits allow, fairly; then arm the timer. Cost: O(deliveries started). */
  private dispatch(): void {
    if (!this.started || this.stopped) return;
    const now = this.deps.clock.now();
    for (let top = this.later.peek(); top && top.at <= now; top = this.later.peek()) {
      this.later.pop();
      const e = this.messages.get(top.id);
      if (e) this.schedule(e, now);
    }
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
      if ((this.inFlight.get(dest) ?? 0) >= s.perDestination) {
        this.rr++;
        blocked++;
        continue;
      }
      const id = q.ids.shift()!;
      q.members.delete(id);
      const e = this.messages.get(id);
      if (!e || e.state.held) continue;
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
    this.armTimer();
  }

  private armTimer(): void {
    if (this.stopped) return;
    const next = this.later.peek()?.at;
    if (next === undefined) return;
    const now = this.deps.clock.now();
    if (this.timer !== null && this.timerAt <= next) return;
    if (this.timer !== null) this.deps.clock.cancel(this.timer);
    this.timerAt = next;
    this.timer = this.deps.clock.schedule(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.dispatch();
    }, Math.max(0, next - now));
  }

  private run(job: Job): void {
    const dest = job.route.destination;
    this.active++;
    this.inFlight.set(dest, (this.inFlight.get(dest) ?? 0) + 1);
    for (const r of job.recipients) r.status = "delivering";
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
      const n = (this.inFlight.get(dest) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(dest);
      else this.inFlight.set(dest, n);
      this.running.delete(p);
      this.dispatch();
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
    // A message now complete is removed (state file included) below; saving
    // it first would only cost an fsync — unless a DSN is about to be sent,
    // whose recipients must not bounce again after a crash.
    if (!e.state.recipients.every(isFinal) || failed.length > 0) await this.save(e);
    if (failed.length > 0) await this.dsn(e, failed);
    // RFC 3461 §4.1: a success DSN only for recipients that asked for one (dsnRecipients filters).
    if (succeeded.length > 0) await this.dsn(e, succeeded);
    await this.delayWarnings(e, now);
    await this.finishIfDone(e);
    this.schedule(e, this.deps.clock.now());
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
    this.background(this.save(e).then(() => this.dsn(e, failed)).then(() => this.finishIfDone(e)));
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
    await this.save(e);
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

  private async finishIfDone(e: Entry): Promise<void> {
    if (!e.state.recipients.every(isFinal)) return;
    if (this.messages.get(e.state.id) !== e) return;
    this.messages.delete(e.state.id);
    await e.saving;
    await this.deps.spool.remove(e.state.id);
    await this.deps.state.remove(e.state.id);
    this.deps.log.info({ queueId: e.state.id }, "removed");
    this.events.emit({ type: "removed", queueId: e.state.id });
  }
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

function describe(e: Entry): QueueListItem {
  return {
    id: e.state.id,
    arrival: e.state.arrival,
    size: e.envelope.size ?? e.envelope.declaredSize,
    sender: e.envelope.mailFrom,
    held: e.state.held,
    ...(e.state.held && e.state.holdReason !== undefined ? { heldReason: e.state.holdReason } : {}),
    recipients: e.state.recipients.map((r) => ({
      address: r.address,
      original: r.original,
      status: r.status,
      attempts: r.attempts,
      nextAttempt: r.nextAttempt,
      ...(r.lastError ? { lastError: `${r.lastError.enhanced} ${r.lastError.diagnostic}` } : {}),
    })),
  };
}

