/**
 * An SMTP worker process (forked by workers/worker-pool.ts): it serves the sessions
 * the primary hands it — TLS, the protocol engine, the checks, the intake —
 * through the same builders as a single-process Petrel (mta.ts), with one
 * difference: its spool is the primary's, over the IPC channel
 * (spool/remote-spool.ts), and what happens is told to the primary's event bus.
 * It runs as the user the primary switched to before forking it.
 *
 * Signals are the primary's to act on (a service manager may send them to
 * every process of the group): the worker stops when the primary says
 * `close` or when the channel to it is gone.
 */
import * as net from "node:net";
import type { Logger } from "pino";
import { buildIntake, loadSigningKeys, openAccounts, startReception, type Reception } from "./mta.ts";
import { loadTlsContexts } from "./server/smtp-server.ts";
import type { ListenerSocket } from "./server/listener-sockets.ts";
import { OcspStapler } from "./server/ocsp-stapler.ts";
import { FileAcmeStore } from "./acme/acme-store.ts";
import type { Config } from "./config/schema.ts";
import type { SigningKeys } from "./mailauth/signing-keys.ts";
import { systemClock } from "./mail/clock.ts";
import { unmapIpv4 } from "./mail/networks.ts";
import { createLogger } from "./system/logger.ts";
import type { PetrelEventBody } from "./events/petrel-event.ts";
import { RemoteSpool, type SpoolChannel } from "./spool/remote-spool.ts";
import { RemoteInflow } from "./workers/remote-inflow.ts";
import { openDatabase } from "./storage/postgres/open-database.ts";
import type { PostgresPool } from "./storage/postgres/postgres-pool.ts";
import type { FromWorker, HandoverVerdict, ToWorker } from "./workers/messages.ts";

const channel: SpoolChannel & { send(m: FromWorker): Promise<void> } = {
  send: (m: FromWorker) => new Promise<void>((resolve, reject) => {
    if (!process.connected) return reject(new Error("no channel to the primary"));
    process.send!(m, undefined, {}, (err) => (err ? reject(err) : resolve()));
  }),
};

for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, () => {});

const spool = new RemoteSpool(channel);
const inflow = new RemoteInflow((m) => channel.send(m));
/** The primary's verdicts, per client address, for connections not yet seen by the client-limits check. */
const verdicts = new Map<string, { verdict: HandoverVerdict }[]>();
/** AUTH failures told to the primary, waiting for its `auth-verdict`. */
const authAsked = new Map<number, (banned: boolean | undefined) => void>();
let nextAuthReq = 1;
let handlers: ((listener: number, socket: net.Socket) => void) | null = null;
let reception: Reception | null = null;
let stopping: Promise<void> | null = null;
let log: Logger | null = null;
let database: PostgresPool | null = null;
let accounts: { close?(): Promise<void> } | null = null;
let signingKeys: SigningKeys | null = null;
/** The dkim.domains the keys were loaded for. */
let signingDomains = "";
/** Connections a worker holds to the cluster's database: it only reads accounts and DKIM keys there. */
const WORKER_POOL_SIZE = 4;

process.on("message", (m: ToWorker, handle?: unknown) => {
  switch (m.t) {
    case "start":
      start(m).catch((err: unknown) => {
        void channel.send({ t: "start-failed", message: (err as Error).message }).finally(() => process.exit(1));
      });
      break;
    case "connection":
      accept(m.conn, m.listener, m.verdict, handle as net.Socket | undefined);
      break;
    case "reserved":
    case "committed":
    case "failed":
      spool.answer(m);
      break;
    case "reload":
      reload(m.req, m.config);
      break;
    case "inflow-state":
      inflow.follow(m.state);
      break;
    case "inflow-go":
      inflow.go(m.req);
      break;
    case "auth-verdict":
      authAsked.get(m.req)?.(m.banned);
      authAsked.delete(m.req);
      break;
    case "close":
      void stop(0);
      break;
  }
});
process.on("disconnect", () => {
  spool.disconnect();
  inflow.releaseAll();
  // Nobody will answer: the sessions fall back to this worker's own count.
  for (const answer of authAsked.values()) answer(undefined);
  authAsked.clear();
  void stop(0);
});

async function start(m: Extract<ToWorker, { t: "start" }>): Promise<void> {
  const { config } = m;
  log = createLogger(config.log).child({ worker: m.index });
  // storage.kind postgres: the accounts are in the database; the primary migrated it, a worker only reads.
  database = config.storage.kind === "postgres"
    ? await openDatabase({ ...config.storage, migrate: false, poolSize: Math.min(WORKER_POOL_SIZE, config.storage.poolSize) }, log.child({ component: "database" }))
    : null;
  const opened = await openAccounts(config, log, database);
  accounts = opened;
  // From the database as the accounts are (storage.kind postgres), not passed by the primary: the
  // private keys stay off the IPC channel, and a reload reads them again the same way.
  signingKeys = await loadSigningKeys(config, database);
  signingDomains = JSON.stringify(config.dkim.domains);
  const acmeStore = config.tls.acme ? new FileAcmeStore(config.dataDir) : null;
  const tls = await loadTlsContexts(config, log, acmeStore ? { cert: acmeStore.certificatePath, key: acmeStore.certificatePath } : undefined);
  const ocsp = config.tls.ocspStapling ? new OcspStapler({ chains: () => tls.chains(), clock: systemClock, log }) : null;
  if (ocsp) {
    tls.on("reload", () => void ocsp.refresh());
    void ocsp.refresh();
  }
  const events = forwardedEvents();
  const intake = buildIntake(config, { spool, log, signingKeys, events, inflow });
  const serves: ((socket: net.Socket) => void)[] = [];
  const sockets: ListenerSocket[] = config.listeners.map((listener, i) => ({
    listener,
    server: net.createServer(),
    address: m.bound[i].address,
    port: m.bound[i].port,
    serve: (onConnection) => void (serves[i] = onConnection),
  }));
  reception = await startReception(config, {
    log, accounts: opened, intake, tls, sockets, signingKeys, events,
    ...(ocsp ? { ocspResponse: ocsp.responder } : {}),
    ...(m.errorSleep !== undefined ? { errorSleep: m.errorSleep } : {}),
    primaryVerdict: takeVerdict,
    primaryAuthFailed: tellAuthFailed,
    announce: false,
  });
  handlers = (listener, socket) => serves[listener]?.(socket);
  await channel.send({ t: "ready" });
}

/** A connection the primary accepted: served like one accepted here, its end told back. */
function accept(conn: number, listener: number, verdict: HandoverVerdict, socket: net.Socket | undefined): void {
  if (!socket) return void channel.send({ t: "released", conn }).catch(() => {});
  const address = unmapIpv4(socket.remoteAddress ?? "unknown");
  const entry = { verdict };
  if (verdict !== "local") {
    const list = verdicts.get(address) ?? [];
    list.push(entry);
    verdicts.set(address, list);
  }
  socket.once("close", () => {
    forgetVerdict(address, entry);
    channel.send({ t: "released", conn }).catch(() => {});
  });
  if (!handlers || stopping) return void socket.destroy();
  handlers(listener, socket);
}

/** The primary's count for the next connection of `address` the check sees; undefined: count here. */
function takeVerdict(address: string): HandoverVerdict | undefined {
  const list = verdicts.get(address);
  const entry = list?.shift();
  if (list && list.length === 0) verdicts.delete(address);
  return entry?.verdict;
}

/** A failed AUTH, counted by the primary across all workers: whether the address is banned now. */
function tellAuthFailed(address: string): Promise<boolean | undefined> {
  const req = nextAuthReq++;
  return new Promise((resolve) => {
    authAsked.set(req, resolve);
    channel.send({ t: "auth-failed", req, address }).catch(() => {
      authAsked.delete(req);
      resolve(undefined);
    });
  });
}

function forgetVerdict(address: string, entry: { verdict: HandoverVerdict }): void {
  const list = verdicts.get(address);
  if (!list) return;
  const i = list.indexOf(entry);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) verdicts.delete(address);
}

function reload(req: number, config: Config): void {
  const r = reception;
  if (!r) return void channel.send({ t: "reloaded", req, error: "not started" }).catch(() => {});
  (async () => {
    const apply = await r.prepare(config);
    // As the primary: the keys are loaded again only when dkim.domains changed.
    const dkim = JSON.stringify(config.dkim.domains);
    const nextKeys = dkim !== signingDomains ? await loadSigningKeys(config, database) : null;
    apply();
    if (nextKeys !== null) {
      signingKeys?.replaceWith(nextKeys);
      signingDomains = dkim;
    }
    await r.tls.reload();
  })().then(
    () => channel.send({ t: "reloaded", req }),
    (err: unknown) => channel.send({ t: "reloaded", req, error: (err as Error).message }),
  ).catch(() => {});
}

/** The events of this worker, to the primary's bus in one message per turn of the event loop. */
function forwardedEvents(): { emit(e: PetrelEventBody): void } {
  let batch: PetrelEventBody[] = [];
  return {
    emit(e) {
      if (batch.length === 0) {
        setImmediate(() => {
          const events = batch;
          batch = [];
          channel.send({ t: "events", events }).catch(() => {});
        });
      }
      batch.push(e);
    },
  };
}

function stop(code: number): Promise<void> {
  stopping ??= (async () => {
    try {
      await reception?.close();
      await accounts?.close?.();
      await database?.end();
    } catch (err) {
      log?.error({ err: (err as Error).message }, "SMTP worker did not close cleanly");
    }
    process.exit(code);
  })();
  return stopping;
}
