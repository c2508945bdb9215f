/**
 * The admin side of a running Petrel, as mta.ts wires it: the event bus
 * every box emits to, the message trace and activity feed it feeds, the
 * metrics, the per-minute series, the API token, and the listeners serving
 * the API and /metrics. Listeners are bound first (with the SMTP ones, while
 * the process may still be root); the rest opens in the data directory
 * after the switch of user; the API is attached once the queue and the
 * accounts it operates are open.
 */
import { join } from "node:path";
import { Hono } from "hono";
import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import type { Clock } from "../mail/clock.ts";
import type { AccountStore } from "../accounts/account-store.ts";
import type { QueueManager } from "../queue/queue-manager.ts";
import type { TlsContextProvider } from "../server/tls-contexts.ts";
import { EventBus } from "../events/event-bus.ts";
import { TraceStore } from "../events/trace-store.ts";
import { ActivitySeries } from "./activity-series.ts";
import { adminApi } from "./api-app.ts";
import { dashboardApp, isDashboardPath } from "./dashboard-app.ts";
import { HtmlViews } from "./html-views.ts";
import { bindAdminListener, type AdminListener } from "./admin-listener.ts";
import { carriesToken, loadOrCreateToken } from "./admin-auth.ts";
import { Metrics, type QueueShape } from "./metrics.ts";
import type { QueueTotals } from "../queue/queue-report.ts";
import type { ServerStatus } from "./server-status.ts";

export interface AdminListeners {
  readonly api: AdminListener | null;
  /** /metrics on a listener of its own (metrics.listen). */
  readonly metrics: AdminListener | null;
}

/** Bind what `admin.listen` and `metrics.listen` ask for (before privileges drop). */
export async function bindAdminListeners(config: Config, o: { tls: TlsContextProvider; log: Logger }): Promise<AdminListeners> {
  const api = config.admin.enabled ? await bindAdminListener({ ...config.admin.listen, tls: o.tls, log: o.log, name: "admin API" }) : null;
  try {
    const m = config.metrics;
    const metrics = m.enabled && m.listen ? await bindAdminListener({ ...m.listen, tls: o.tls, log: o.log, name: "metrics" }) : null;
    return { api, metrics };
  } catch (err) {
    await api?.close();
    throw err;
  }
}

export async function closeAdminListeners(l: AdminListeners): Promise<void> {
  await Promise.all([l.api?.close(), l.metrics?.close()]);
}

export interface AdminSources {
  readonly queue: QueueManager;
  readonly accounts: AccountStore;
  readonly status: () => Promise<ServerStatus>;
  /** The configuration in force (a reload replaces it). */
  readonly config: () => Config;
}

/** The queue's counts before the queue is attached. */
const emptyTotals: QueueTotals = { messages: 0, held: 0, active: 0, activeLimit: 0, activePeak: 0, waiting: { queued: 0, delivering: 0, deferred: 0 }, oldestArrival: null };

export class AdminService {
  /** What every box emits to. */
  readonly bus: EventBus;
  readonly trace: TraceStore | null;
  readonly metrics: Metrics | null;
  readonly series: ActivitySeries;
  readonly listeners: AdminListeners;
  private readonly config: Config;
  private readonly clock: Clock;
  private readonly log: Logger;
  private token = "";
  private queue: QueueManager | null = null;
  /** The API's routes, once attached (the OpenAPI test compares them with the description). */
  api: ReturnType<typeof adminApi> | null = null;

  private constructor(config: Config, o: { clock: Clock; log: Logger; listeners: AdminListeners }) {
    this.config = config;
    this.clock = o.clock;
    this.log = o.log;
    this.listeners = o.listeners;
    this.bus = new EventBus({ clock: o.clock, onError: (err) => o.log.error({ err }, "event listener failed") });
    const a = config.admin;
    this.trace = a.enabled
      ? new TraceStore({
        dir: join(config.dataDir, "trace"), retention: a.traceRetention, maxBytes: a.traceMaxSize, clock: o.clock,
        onError: (err) => o.log.error({ err }, "message trace not written"),
      })
      : null;
    const shape = async (now: number): Promise<QueueShape> => {
      const q = this.queue;
      if (!q) return { totals: emptyTotals, rows: [] };
      const [totals, rows] = await Promise.all([q.totals(now), q.summary(now)]);
      return { totals, rows };
    };
    this.metrics = config.metrics.enabled ? new Metrics({ queue: shape, now: () => o.clock.now() }) : null;
    this.series = new ActivitySeries({ clock: o.clock, queueSize: async () => (this.queue ? (await this.queue.totals()).messages : 0) });
  }

  /** In the data directory, as the user Petrel runs as: the token file, the trace. */
  static async open(config: Config, o: { clock: Clock; log: Logger; listeners: AdminListeners }): Promise<AdminService> {
    const s = new AdminService(config, o);
    const needsToken = (config.admin.enabled && config.admin.auth === "token") || (config.metrics.enabled && config.metrics.auth === "token");
    if (needsToken) s.token = await loadOrCreateToken(config.admin.tokenFile ?? join(config.dataDir, "admin.token"));
    if (s.trace) {
      s.bus.continueFrom((await s.trace.open()) + 1);
      const trace = s.trace;
      s.bus.subscribe((e) => trace.take(e));
    }
    if (s.metrics) {
      const metrics = s.metrics;
      s.bus.subscribe((e) => metrics.take(e));
    }
    if (config.admin.enabled) s.bus.subscribe((e) => s.series.take(e));
    return s;
  }

  /** Serve the API and /metrics over the open queue and accounts. */
  attach(sources: AdminSources): void {
    this.queue = sources.queue;
    const { config } = this;
    const metrics = this.metrics;
    if (this.listeners.api && this.trace) {
      const views = new HtmlViews({ clock: this.clock });
      const maildirRoot = join(config.dataDir, "mail");
      const log = this.log.child({ component: "admin" });
      const app = adminApi({
        queue: sources.queue, accounts: sources.accounts, passwords: () => sources.config().passwords,
        maildirRoot, trace: this.trace, bus: this.bus, series: this.series, status: sources.status, views,
        auth: config.admin.auth, token: this.token, sessionLifetime: config.admin.sessionLifetime,
        ...(metrics && !config.metrics.listen ? { metrics: { registry: metrics, auth: config.metrics.auth } } : {}),
        clock: this.clock, log,
      });
      this.api = app;
      const dashboard = dashboardApp({ views, accounts: sources.accounts, maildirRoot, log });
      this.listeners.api.serve((req) => (isDashboardPath(new URL(req.url).pathname) ? dashboard.fetch(req) : app.fetch(req)));
      this.series.start();
    }
    if (this.listeners.metrics && metrics) {
      const app = new Hono();
      app.get("/metrics", async (c) => {
        if (config.metrics.auth === "token" && !carriesToken(c.req.header("Authorization"), this.token)) {
          return c.json({ error: "authentication required: Authorization: Bearer <the admin token>" }, 401);
        }
        return c.body(await metrics.text(), 200, { "Content-Type": metrics.contentType });
      });
      app.notFound((c) => c.json({ error: "only /metrics is served here" }, 404));
      this.listeners.metrics.serve(app.fetch);
    }
  }

  /** Stop serving (shutdown begins). */
  async stopListening(): Promise<void> {
    this.series.stop();
    await closeAdminListeners(this.listeners);
  }

  /** Write what the trace still holds (after the queue stopped, so its last events are in). */
  async close(): Promise<void> {
    await this.stopListening();
    await this.trace?.close();
  }
}
