/**
 * Prometheus metrics (prom-client, text format 0.0.4), counted from the
 * events the boxes emit and, at each scrape, from the queue as it is: how
 * many clients connect and are refused (by the check that refused them),
 * messages accepted and refused, deliveries by outcome and transport, how
 * long mail takes from the 250 to the mailbox, what waits in the queue and
 * for how long (qshape's age buckets), TLS in and out, failed logins, and
 * the spool's commit latency.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { PetrelEvent } from "../events/petrel-event.ts";
import { AGE_BUCKETS, type QueueTotals, type SummaryRow } from "../queue/queue-report.ts";

/** What the queue gauges read: the counts and the qshape table (TOTAL row first). */
export interface QueueShape {
  readonly totals: QueueTotals;
  readonly rows: readonly SummaryRow[];
}

export interface MetricsSources {
  /** The queue now (read at each scrape). */
  readonly queue: (now: number) => Promise<QueueShape>;
  readonly now: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly connectionsCurrent: Gauge<"role">;
  private readonly connections: Counter<"role">;
  private readonly refusedConnections: Counter<"role" | "check">;
  private readonly accepted: Counter<"origin" | "role">;
  private readonly rejected: Counter<"check" | "stage">;
  private readonly deliveries: Counter<"transport" | "status">;
  private readonly latency: Histogram<"transport">;
  private readonly attemptDuration: Histogram<"transport">;
  private readonly tlsIn: Counter<"role" | "version">;
  private readonly tlsOut: Counter<"transport" | "version">;
  private readonly authFailures: Counter<"role">;
  private readonly spoolCommit: Histogram;
  private readonly dsns: Counter<"action">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.connectionsCurrent = new Gauge({ name: "petrel_connections_current", help: "SMTP connections open now, by listener role", labelNames: ["role"], registers });
    this.connections = new Counter({ name: "petrel_connections_total", help: "SMTP connections served (greeted), by listener role", labelNames: ["role"], registers });
    this.refusedConnections = new Counter({
      name: "petrel_connections_refused_total", help: "SMTP connections refused before the greeting, by listener role and the check that refused", labelNames: ["role", "check"], registers,
    });
    this.accepted = new Counter({
      name: "petrel_messages_accepted_total", help: "Messages accepted into the spool: origin smtp (received) or local (DSNs and reports Petrel composed)", labelNames: ["origin", "role"], registers,
    });
    this.rejected = new Counter({
      name: "petrel_rejections_total", help: "Connections, commands and messages refused, by the check that refused (smtp: the protocol engine; spool: storage) and the stage", labelNames: ["check", "stage"], registers,
    });
    this.deliveries = new Counter({ name: "petrel_deliveries_total", help: "Delivery attempts per recipient, by transport and outcome (delivered, deferred, bounced)", labelNames: ["transport", "status"], registers });
    this.latency = new Histogram({
      name: "petrel_delivery_latency_seconds", help: "Time from acceptance (the 250) to delivery, per delivered recipient", labelNames: ["transport"], registers,
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14_400, 86_400, 432_000],
    });
    this.attemptDuration = new Histogram({
      name: "petrel_delivery_attempt_seconds", help: "How long one delivery attempt took", labelNames: ["transport"], registers,
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
    });
    this.tlsIn = new Counter({ name: "petrel_tls_inbound_total", help: "Inbound TLS sessions established (implicit TLS or STARTTLS), by role and version", labelNames: ["role", "version"], registers });
    this.tlsOut = new Counter({
      name: "petrel_tls_outbound_total", help: "Delivery attempts on a session with a server, by transport and TLS version (none: plain text)", labelNames: ["transport", "version"], registers,
    });
    this.authFailures = new Counter({ name: "petrel_auth_failures_total", help: "Failed AUTH exchanges, by role", labelNames: ["role"], registers });
    this.spoolCommit = new Histogram({
      name: "petrel_spool_commit_seconds", help: "Time to make one message durable in the spool (the 250 waits for it)", registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    });
    this.dsns = new Counter({ name: "petrel_dsn_total", help: "Delivery status notifications sent, by action (failed, delayed, delivered, relayed)", labelNames: ["action"], registers });
    queueGauges(this.registry, sources);
  }

  /**
   * The SMTP workers' gauges (read at each scrape): sessions each serves now
   * and how often each was started again. Everything else the workers do
   * reaches the counters above as events, so they count the whole server.
   */
  watchWorkers(workers: () => readonly { readonly index: number; readonly sessions: number; readonly restarts: number }[]): void {
    const registers = [this.registry];
    new Gauge({
      name: "petrel_worker_sessions", help: "SMTP sessions each worker process serves now", labelNames: ["worker"], registers,
      collect() {
        for (const w of workers()) this.set({ worker: String(w.index) }, w.sessions);
      },
    });
    new Gauge({
      name: "petrel_worker_restarts", help: "Times each SMTP worker process was started again after it died", labelNames: ["worker"], registers,
      collect() {
        for (const w of workers()) this.set({ worker: String(w.index) }, w.restarts);
      },
    });
  }

  /** An event from the bus. */
  take(e: PetrelEvent): void {
    switch (e.type) {
      case "connection":
        if (e.refused === undefined) {
          this.connections.inc({ role: e.role });
          this.connectionsCurrent.inc({ role: e.role });
        }
        break;
      case "disconnection":
        this.connectionsCurrent.dec({ role: e.role });
        break;
      case "rejected":
        this.rejected.inc({ check: e.check, stage: e.stage });
        if (e.stage === "connect") this.refusedConnections.inc({ role: e.role, check: e.check });
        break;
      case "accepted":
        this.accepted.inc({ origin: e.origin, role: e.client.role });
        break;
      case "delivery":
        this.deliveries.inc({ transport: e.transport, status: e.status });
        this.attemptDuration.observe({ transport: e.transport }, e.durationMs / 1000);
        if (e.latencyMs !== undefined) this.latency.observe({ transport: e.transport }, e.latencyMs / 1000);
        if (e.remoteAddress !== undefined) this.tlsOut.inc({ transport: e.transport, version: e.tls ?? "none" });
        break;
      case "expired":
        this.deliveries.inc({ transport: "queue", status: "bounced" });
        break;
      case "tls":
        this.tlsIn.inc({ role: e.role, version: e.version });
        break;
      case "auth-failure":
        this.authFailures.inc({ role: e.role });
        break;
      case "spool-commit":
        this.spoolCommit.observe(e.durationMs / 1000);
        break;
      case "dsn":
        this.dsns.inc({ action: e.action });
        break;
      default:
        break;
    }
  }

  /** The text a scrape gets. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** The queue's shape, read at each scrape from the queue's aggregates (never a listing: the queue may hold a million messages). */
function queueGauges(registry: Registry, sources: MetricsSources): void {
  const registers = [registry];
  let snapshot: { at: number; shape: Promise<QueueShape> } | null = null;
  // The gauges of one scrape share one reading of the queue.
  const shape = (): Promise<QueueShape> => {
    const now = sources.now();
    if (!snapshot || snapshot.at !== now) snapshot = { at: now, shape: sources.queue(now) };
    return snapshot.shape;
  };
  new Gauge({
    name: "petrel_queue_messages", help: "Messages in the queue: held, or active (waiting or being delivered)", labelNames: ["state"], registers,
    async collect() {
      const { totals } = await shape();
      this.set({ state: "held" }, totals.held);
      this.set({ state: "active" }, totals.messages - totals.held);
    },
  });
  new Gauge({
    name: "petrel_queue_recipients", help: "Recipients not yet delivered or bounced, by state", labelNames: ["state"], registers,
    async collect() {
      const { totals } = await shape();
      for (const [state, n] of Object.entries(totals.waiting)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: "petrel_queue_recipients_by_age", help: "Recipients waiting in the queue by their message's age, in qshape's buckets: le is the bucket's upper bound in minutes (not cumulative)", labelNames: ["le"], registers,
    async collect() {
      const { rows } = await shape();
      const total = rows.find((r) => r.domain === "TOTAL");
      const labels = [...AGE_BUCKETS.map(String), "+Inf"];
      labels.forEach((le, i) => this.set({ le }, total?.buckets[i] ?? 0));
    },
  });
  new Gauge({
    name: "petrel_queue_oldest_message_age_seconds", help: "Age of the oldest message in the queue (0 when it is empty)", registers,
    async collect() {
      const { totals } = await shape();
      this.set(totals.oldestArrival === null ? 0 : Math.max(0, (sources.now() - totals.oldestArrival) / 1000));
    },
  });
}
