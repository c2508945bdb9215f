/**
 * The primary's SMTP workers: `workers:` processes that serve the sessions
 * (TLS, the protocol engine, the checks, the intake) while this process
 * keeps what must stay one — the listeners bound before privileges drop,
 * the data directory's lock, the spool, the queue manager, the agents, the
 * admin side. Each connection is accepted here and handed, unread, to the
 * worker with the fewest open connections (a fork's handle passing, as the
 * cluster module's round-robin does); every spool step of a message comes
 * back here (spool-host.ts), so group commit, queue order and
 * per-destination limits are those of one process.
 *
 * The connection caps (`limits.connections`, `limits.connectionsPerClient`)
 * are counted here, across workers, for every connection whose client is
 * its peer address; behind a trusted PROXY peer the worker counts the named
 * client itself. AUTH failures are counted here too: every worker tells each
 * one (`auth-failed`), so `limits.authFailuresPerClient` is one count for the
 * server, and a banned address is refused at connect on whichever worker its
 * next connection lands (the verdict `banned`). A worker that dies is started again after a backoff; what
 * it had committed is in the spool already, what it had not was never
 * acknowledged.
 */
import { fork, type ChildProcess } from "node:child_process";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import type * as net from "node:net";
import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import type { ListenerSocket } from "../server/listener-sockets.ts";
import type { Spool, QueueId } from "../spool/spool.ts";
import type { EventSink } from "../events/petrel-event.ts";
import { ClientLimits, type SharedBans } from "../policy/checks/client-limits.ts";
import type { Now } from "../mail/clock.ts";
import { networkMatcher, unmapIpv4 } from "../mail/networks.ts";
import { SpoolHost } from "../spool/spool-host.ts";
import type { FromWorker, HandoverVerdict, ToWorker } from "./messages.ts";
import type { InflowControl } from "../queue/inflow.ts";

export interface WorkerPoolOptions {
  readonly config: Config;
  readonly count: number;
  /** Bound by the primary (pauseOnConnect: nothing is read before a worker has the socket). */
  readonly sockets: readonly ListenerSocket[];
  readonly spool: Spool;
  /** A message a worker received is durable: hand it to the queue manager. */
  readonly onCommitted: (id: QueueId) => void;
  readonly events: EventSink;
  readonly log: Logger;
  readonly errorSleep?: number;
  /** The queue's inflow control, which paces the workers' sessions too (workers/remote-inflow.ts). */
  readonly inflow?: InflowControl;
  /** Restart backoff: the first delay, doubled per quick failure up to `max` (ms). */
  readonly restartDelay?: { readonly min: number; readonly max: number };
  /** The time of the AUTH-failure bans counted here (the system clock when absent). */
  readonly clock?: Now;
  /** The cluster's AUTH-failure bans (storage.kind postgres). */
  readonly sharedBans?: SharedBans;
}

/** One worker as `petrel status` shows it. */
export interface WorkerStatus {
  readonly index: number;
  readonly pid: number | null;
  readonly state: "starting" | "running" | "restarting" | "stopped";
  /** Connections it serves now. */
  readonly sessions: number;
  /** Connections handed to it since the server started. */
  readonly connections: number;
  /** Messages being received through it now. */
  readonly receiving: number;
  readonly restarts: number;
}

interface Slot {
  readonly index: number;
  child: ChildProcess | null;
  state: WorkerStatus["state"];
  readonly host: SpoolHost;
  /**
   * The connections handed to it and not yet closed there. The primary keeps
   * its own descriptor of each (paused, never read) until the worker says the
   * connection ended, so a worker that dies — or a handle lost on the way to
   * it — never leaves a client connected to nobody: closing the last
   * descriptor here ends the connection.
   */
  readonly open: Map<number, { readonly address: string; readonly counted: boolean; readonly socket: net.Socket }>;
  connections: number;
  restarts: number;
  quickFailures: number;
  startedAt: number;
  timer: NodeJS.Timeout | null;
  readonly reloads: Map<number, (error: string | undefined) => void>;
}

/** A worker that lived this long before it died was not failing at start: the backoff starts over. */
const STABLE_MS = 10_000;
/** How long a worker may take to stop after limits.shutdownGrace before it is killed. */
const STOP_MARGIN_MS = 5000;

export class WorkerPool {
  private config: Config;
  private readonly o: WorkerPoolOptions;
  private readonly slots: Slot[] = [];
  private admission: ClientLimits;
  private isTrustedProxy: (peer: string) => boolean;
  private nextConn = 1;
  private nextReq = 1;
  private rotate = 0;
  /** Connections that arrived while no worker was running, handed over when one is. */
  private readonly waiting: { listener: number; socket: net.Socket }[] = [];
  private closing: Promise<void> | null = null;
  private readonly entry = workerEntry();

  private constructor(o: WorkerPoolOptions) {
    this.o = o;
    this.config = o.config;
    this.admission = new ClientLimits(admissionLimits(o.config, o));
    this.isTrustedProxy = networkMatcher(o.config.proxyProtocol.trusted);
    o.inflow?.onState((state) => {
      for (const s of this.slots) if (s.state === "running") this.send(s, { t: "inflow-state", state });
    });
  }

  /**
   * Start every worker and wait until each is ready; a worker that cannot
   * start stops start-up with its reason. Nothing is handed to them before
   * `serve()`: they may load while the spool and the queue open.
   */
  static async start(o: WorkerPoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(o);
    try {
      await Promise.all(Array.from({ length: o.count }, (_, index) => pool.spawn(pool.newSlot(index))));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Hand the listeners' connections to the workers from now on (those that waited first). */
  serve(): void {
    this.o.sockets.forEach((s, i) => s.serve((socket) => this.dispatch(i, socket)));
  }

  get size(): number {
    return this.slots.length;
  }

  status(): WorkerStatus[] {
    return this.slots.map((s) => ({
      index: s.index, pid: s.child?.pid ?? null, state: s.state, sessions: s.open.size, connections: s.connections,
      receiving: s.host.size, restarts: s.restarts,
    }));
  }

  /** A reload: every running worker serves new connections by `config`; rejects with the first worker's error. */
  async reload(config: Config): Promise<void> {
    this.config = config;
    // The counts go on: connections still open and the failures and bans so far.
    this.admission.configure(admissionLimits(config, this.o));
    this.isTrustedProxy = networkMatcher(config.proxyProtocol.trusted);
    const answers = this.slots.filter((s) => s.state === "running" && s.child).map((s) => new Promise<string | undefined>((resolve) => {
      const req = this.nextReq++;
      s.reloads.set(req, resolve);
      this.send(s, { t: "reload", req, config });
    }));
    const failed = (await Promise.all(answers)).find((e) => e !== undefined);
    if (failed !== undefined) throw new Error(`an SMTP worker could not reload: ${failed}`);
  }

  /** Stop: the listeners are closed by the caller first; each worker lets its sessions finish (limits.shutdownGrace) and exits. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const w of this.waiting.splice(0)) w.socket.destroy();
      await Promise.all(this.slots.map((s) => this.stop(s)));
    })();
    return this.closing;
  }

  private newSlot(index: number): Slot {
    const slot: Slot = {
      index, child: null, state: "starting", open: new Map(), connections: 0, restarts: 0, quickFailures: 0, startedAt: 0, timer: null,
      reloads: new Map(),
      host: new SpoolHost({ spool: this.o.spool, onCommitted: this.o.onCommitted, reply: (m) => this.send(slot, m) }),
    };
    this.slots.push(slot);
    return slot;
  }

  private dispatch(listener: number, socket: net.Socket): void {
    if (this.closing) return void socket.destroy();
    const running = this.slots.filter((s) => s.state === "running");
    if (running.length === 0) {
      if (this.waiting.length >= this.config.limits.connections) return void socket.destroy();
      socket.on("error", () => {});
      this.waiting.push({ listener, socket });
      return;
    }
    // The fewest open connections; among equals, in turn.
    this.rotate = (this.rotate + 1) % running.length;
    let best = running[this.rotate];
    for (const s of running) if (s.open.size < best.open.size) best = s;
    this.handOver(best, listener, socket);
  }

  private handOver(slot: Slot, listener: number, socket: net.Socket): void {
    const address = unmapIpv4(socket.remoteAddress ?? "unknown");
    const viaProxy = this.o.sockets[listener].listener.proxyProtocol && this.isTrustedProxy(address);
    const verdict: HandoverVerdict = viaProxy ? "local" : this.admission.admit(address);
    const counted = verdict === "ok";
    const conn = this.nextConn++;
    socket.on("error", () => {});
    slot.open.set(conn, { address, counted, socket });
    slot.connections++;
    const sent = slot.child?.send({ t: "connection", conn, listener, verdict } satisfies ToWorker, socket, { keepOpen: true }, (err) => {
      if (err) this.released(slot, conn);
    });
    if (sent === undefined) this.released(slot, conn);
  }

  private released(slot: Slot, conn: number): void {
    const c = slot.open.get(conn);
    if (!c) return;
    slot.open.delete(conn);
    c.socket.destroy();
    if (c.counted) this.admission.release(c.address);
  }

  private send(slot: Slot, m: ToWorker): void {
    if (!slot.child?.connected) return;
    slot.child.send(m, (err) => {
      if (err) this.o.log.debug({ worker: slot.index, err: err.message }, "message to an SMTP worker not sent");
    });
  }

  private spawn(slot: Slot): Promise<void> {
    slot.state = slot.restarts > 0 ? "restarting" : "starting";
    slot.startedAt = Date.now();
    const child = fork(this.entry, [], { serialization: "advanced", execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    slot.child = child;
    return new Promise<void>((resolve, reject) => {
      let started = false;
      child.on("message", (m: FromWorker) => {
        if (slot.host.handle(m)) return;
        switch (m.t) {
          case "ready":
            started = true;
            slot.state = "running";
            if (this.o.inflow) this.send(slot, { t: "inflow-state", state: this.o.inflow.state });
            this.o.log.info({ worker: slot.index, pid: child.pid }, `SMTP worker ${slot.index} serving (pid ${child.pid})`);
            this.flushWaiting();
            resolve();
            break;
          case "start-failed":
            reject(new Error(m.message));
            break;
          case "events":
            for (const e of m.events) this.o.events.emit(e);
            break;
          case "released":
            this.released(slot, m.conn);
            break;
          case "reloaded":
            slot.reloads.get(m.req)?.(m.error);
            slot.reloads.delete(m.req);
            break;
          case "inflow-took":
            this.o.inflow?.spend();
            break;
          case "auth-failed":
            this.send(slot, { t: "auth-verdict", req: m.req, banned: this.admission.authFailed(m.address) });
            break;
          case "inflow-take": {
            const req = m.req;
            const paced = this.o.inflow?.take();
            if (paced === undefined) this.send(slot, { t: "inflow-go", req });
            else void paced.then(() => this.send(slot, { t: "inflow-go", req }));
            break;
          }
        }
      });
      child.on("error", (err) => this.o.log.error({ worker: slot.index, err: err.message }, "SMTP worker process error"));
      child.on("exit", (code, signal) => {
        slot.child = null;
        for (const conn of [...slot.open.keys()]) this.released(slot, conn);
        for (const r of slot.reloads.values()) r("the worker exited");
        slot.reloads.clear();
        void slot.host.abortAll();
        if (!started) reject(new Error(`SMTP worker ${slot.index} exited during start-up (${signal ?? `status ${code}`})`));
        if (this.closing) {
          slot.state = "stopped";
          return;
        }
        if (!started && slot.restarts === 0) return; // start-up fails; nothing to restart
        this.restartLater(slot, child.pid, code, signal);
      });
      const bound = this.o.sockets.map((b) => ({ address: b.address, port: b.port }));
      this.send(slot, { t: "start", index: slot.index, config: this.config, bound, ...(this.o.errorSleep !== undefined ? { errorSleep: this.o.errorSleep } : {}) });
    });
  }

  private restartLater(slot: Slot, pid: number | undefined, code: number | null, signal: NodeJS.Signals | null): void {
    slot.quickFailures = Date.now() - slot.startedAt < STABLE_MS ? slot.quickFailures + 1 : 0;
    const { min, max } = this.o.restartDelay ?? { min: 100, max: 30_000 };
    const delay = Math.min(max, min * 2 ** Math.max(0, slot.quickFailures - 1));
    slot.state = "restarting";
    slot.restarts++;
    const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
    this.o.log.error({ worker: slot.index, pid, code, signal, restartInMs: delay }, `SMTP worker ${slot.index} (pid ${pid}) ${how}; starting it again in ${delay} ms`);
    slot.timer = setTimeout(() => {
      slot.timer = null;
      if (this.closing) return;
      this.spawn(slot).catch((err: unknown) => {
        this.o.log.error({ worker: slot.index, err: (err as Error).message }, `SMTP worker ${slot.index} did not start`);
      });
    }, delay);
  }

  private flushWaiting(): void {
    for (const w of this.waiting.splice(0)) {
      if (w.socket.destroyed) continue;
      this.dispatch(w.listener, w.socket);
    }
  }

  private async stop(slot: Slot): Promise<void> {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = null;
    const child = slot.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      slot.state = "stopped";
      return;
    }
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    if (child.connected) child.send({ t: "close" } satisfies ToWorker, () => {});
    else child.kill("SIGTERM");
    const limit = setTimeout(() => {
      this.o.log.warn({ worker: slot.index, pid: child.pid }, "SMTP worker did not stop in time; killing it");
      child.kill("SIGKILL");
    }, this.config.limits.shutdownGrace + STOP_MARGIN_MS);
    await exited;
    clearTimeout(limit);
    await slot.host.abortAll();
    slot.state = "stopped";
  }
}

function admissionLimits(config: Config, o: Pick<WorkerPoolOptions, "clock" | "sharedBans">): ConstructorParameters<typeof ClientLimits>[0] {
  return { ...config.limits, ...(o.clock ? { clock: o.clock } : {}), ...(o.sharedBans ? { shared: o.sharedBans } : {}) };
}

/** src/smtp-worker.ts, .ts from the sources or .js when built. */
function workerEntry(): string {
  const here = fileURLToPath(import.meta.url);
  return fileURLToPath(new URL(`../smtp-worker${extname(here)}`, import.meta.url));
}
