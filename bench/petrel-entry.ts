/**
 * Petrel as a server under test, in its own process:
 *
 *   node bench/petrel-entry.ts MODE ADDRESS PORT DATADIR [WORKERS]
 *
 * MODE is
 *   durable  startReception with the default spool, the journal (accept only: group commit, nothing delivers)
 *   files    startReception with spool.format: files (accept only: a file per message, nothing delivers)
 *   postgres startReception with storage.kind postgres at $PETREL_BENCH_PG_URL (accept only: group commit in PostgreSQL)
 *   discard  startReception with the bench-only DiscardSpool (protocol path and checks, no disk)
 *   mta      the whole startMta (accept + queue manager + Maildir delivery), with `workers: WORKERS` (default 1)
 *   pool     WORKERS SMTP worker processes over the journal in this process (accept only, nothing
 *            delivers): what startMta runs with `workers:` above 1, without the queue manager
 *
 * One mx listener, local domain bench.test with the user u@bench.test (and a
 * catch-all to it), logs silent. Limits that a load generator from one IP
 * would hit are raised (connections, connections per client, messages per
 * connection); everything else is Petrel's default. Prints one JSON line
 * {"ready":true,...} when listening; stops cleanly on SIGTERM. With
 * PETREL_BENCH_PROFILE=FILE, SIGUSR2 starts and stops a CPU profile.
 */
import { mkdir } from "node:fs/promises";
import pino from "pino";
import { parseConfig } from "../src/config/load.ts";
import { FileAccountStore } from "../src/accounts/file-account-store.ts";
import { startMta, startReception } from "../src/mta.ts";
import { DiscardSpool } from "./discard-spool.ts";
import { openDatabase } from "../src/storage/postgres/open-database.ts";
import { createSpool } from "../src/spool/create-spool.ts";
import { bindListeners, closeListeners } from "../src/server/listener-sockets.ts";
import { WorkerPool } from "../src/workers/worker-pool.ts";
import { noEvents } from "../src/events/petrel-event.ts";

const [mode, address, portText, dataDir, workersText] = process.argv.slice(2);
const workers = Number(workersText ?? 1);
const pgUrl = process.env.PETREL_BENCH_PG_URL;
if (!["durable", "files", "discard", "mta", "postgres", "pool"].includes(mode) || !address || !portText || !dataDir || !(workers >= 1) || (mode === "postgres" && !pgUrl)) {
  process.stderr.write("usage: [PETREL_BENCH_PG_URL=postgres://…] petrel-entry.ts durable|files|discard|mta|postgres|pool ADDRESS PORT DATADIR [WORKERS]\n");
  process.exit(64);
}

export const BENCH_DOMAIN = "bench.test";
export const BENCH_USER = "u@bench.test";

await mkdir(dataDir, { recursive: true });
const config = parseConfig({
    admin: { enabled: false },
  hostname: "petrel.bench.test",
  dataDir,
  domains: [BENCH_DOMAIN],
  listeners: [{ address, port: Number(portText), role: "mx" }],
  limits: { connections: 20000, connectionsPerClient: 20000, messagesPerConnection: 1000000 },
  log: { level: "silent" },
  // One process unless a workers scenario asks for more (the other scenarios pin the server to one CPU).
  workers,
  ...(mode === "files" ? { spool: { format: "files" } } : {}),
  ...(mode === "postgres" ? { storage: { kind: "postgres", url: pgUrl, node: "bench" } } : {}),
}, "bench");
const log = pino({ level: "silent" });

const accounts = new FileAccountStore({ dataDir, configDomains: config.domains, configUsers: config.users });
if (!(await accounts.getUser(BENCH_USER))) {
  await accounts.addUser(BENCH_USER, "bench-password-not-used");
  await accounts.addAlias(`@${BENCH_DOMAIN}`, BENCH_USER);
}

let close: () => Promise<void>;
let port: number;
if (mode === "mta") {
  const mta = await startMta(config, { log, errorSleep: 0, controlSocket: false });
  close = () => mta.close();
  port = mta.smtp.listeners[0].port;
} else if (config.storage.kind === "postgres") {
  const database = await openDatabase(config.storage, log);
  const server = await startReception(config, { log, errorSleep: 0, accounts, database });
  close = async () => {
    await server.close();
    await database.end();
  };
  port = server.listeners[0].port;
} else if (mode === "pool") {
  const spool = await createSpool(dataDir, "journal", () => {});
  await spool.open();
  const sockets = await bindListeners(config.listeners, config.limits.connections, { pauseOnConnect: true });
  const pool = await WorkerPool.start({ config, count: workers, sockets, spool, onCommitted: () => {}, events: noEvents, log, errorSleep: 0 });
  pool.serve();
  close = async () => {
    await closeListeners(sockets);
    await pool.close();
    await spool.close();
  };
  port = sockets[0].port;
} else {
  const spool = mode === "discard" ? new DiscardSpool() : undefined;
  const server = await startReception(config, { log, errorSleep: 0, accounts, spool });
  close = () => server.close();
  port = server.listeners[0].port;
}
process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, port, mode }) + "\n");

// CPU profile of a chosen stretch (bench/run.ts --cpu-prof): SIGUSR2 starts the
// V8 profiler, the next SIGUSR2 writes the profile to $PETREL_BENCH_PROFILE.
const profilePath = process.env.PETREL_BENCH_PROFILE;
if (profilePath) {
  const { Session } = await import("node:inspector/promises");
  const { writeFile } = await import("node:fs/promises");
  let session: InstanceType<typeof Session> | null = null;
  process.on("SIGUSR2", () => {
    void (async () => {
      if (session === null) {
        session = new Session();
        session.connect();
        await session.post("Profiler.enable");
        await session.post("Profiler.setSamplingInterval", { interval: 200 });
        await session.post("Profiler.start");
        process.stdout.write(JSON.stringify({ profiling: true }) + "\n");
      } else {
        const { profile } = await session.post("Profiler.stop");
        await writeFile(profilePath, JSON.stringify(profile));
        session.disconnect();
        session = null;
        process.stdout.write(JSON.stringify({ profileWritten: profilePath }) + "\n");
      }
    })();
  });
}

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  close().then(() => process.exit(0), (err: unknown) => {
    process.stderr.write(`close failed: ${String(err)}\n`);
    process.exit(1);
  });
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
