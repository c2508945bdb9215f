import type { Logger } from "pino";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { ConfigError } from "../config/config-error.ts";
import { startMta, type Mta } from "../mta.ts";
import { DataDirInUse } from "../system/data-dir-lock.ts";
import { NodeNameInUse } from "../cluster/node-registry.ts";
import { checkStartingUser, PrivilegeError, resolveRunAs } from "../system/privileges.ts";
import { createLogger } from "../system/logger.ts";
import { hostPort } from "../server/listener-sockets.ts";

/**
 * `petrel serve`: load the config, start, stop cleanly on SIGTERM/SIGINT.
 *
 * Exit statuses (sysexits.h): 0 stopped by a signal; 71 (EX_OSERR) a
 * listener cannot be bound; 75 (EX_TEMPFAIL) the data directory is in use by
 * another process, or the cluster node name is in use by a running node (as
 * for the data directory: another instance holds the identity; the same
 * start succeeds once that one stops or counts as gone — not a mistake in
 * this file, though renaming the node is one fix); 77 (EX_NOPERM) the switch to `user:` failed; 78
 * (EX_CONFIG) the configuration is wrong, including what is only found at
 * start-up (certificates, the data directory, users and groups).
 */
export const EXIT = { stopped: 0, cannotListen: 71, dataDirInUse: 75, noPermission: 77, config: 78 } as const;

/** How long start-up may take to stop after a signal before the process just exits. */
const STARTUP_STOP_GRACE_MS = 5000;

export async function serve(options: { configPath?: string }): Promise<number> {
  let config: Config;
  try {
    config = await loadConfig(options.configPath);
  } catch (err) {
    if (err instanceof ConfigError) return configProblem(err);
    throw err;
  }
  const log = createLogger(config.log);
  // Signals are caught from the start. During start-up one stops start-up at
  // its next step (and, should a step hang, the process after a grace period);
  // once running, it shuts down cleanly.
  const startup = new AbortController();
  let onSignal: (signal: string) => void = (signal) => {
    if (startup.signal.aborted) return;
    log.warn({ signal }, "signal during start-up; stopping");
    startup.abort(new StartupInterrupted(signal));
    setTimeout(() => {
      process.stderr.write(`petrel: start-up did not stop within ${STARTUP_STOP_GRACE_MS / 1000} s after ${signal}; exiting\n`);
      // A step blocked in the kernel (reading a FIFO, a dead NFS server) would block exit()
      // too, which waits for the thread pool: die of the signal instead, as its default
      // action would have done.
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }, STARTUP_STOP_GRACE_MS).unref();
  };
  let onHangup = () => {};
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGHUP", () => onHangup());
  let mta: Mta;
  try {
    const runAs = await resolveRunAs(config);
    checkStartingUser(config, runAs, process.getuid!(), log);
    mta = await startMta(config, { log, runAs, signal: startup.signal, configPath: options.configPath });
  } catch (err) {
    return startupFailed(err, log);
  }
  process.stderr.write(summary(config, mta, (await mta.accounts.listUsers()).length === 0));

  return new Promise<number>((resolve) => {
    let stopping = false;
    onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "shutting down");
      mta.close().then(() => resolve(EXIT.stopped), (err) => {
        log.error({ err }, "shutdown failed");
        resolve(1);
      });
    };
    // A configuration with errors is logged by reload() itself; the server goes on with the old one.
    onHangup = () => void mta.reload().catch((err) => {
      if (!(err instanceof ConfigError)) log.error({ err }, "reload failed");
    });
  });
}

class StartupInterrupted extends Error {
  override readonly name = "StartupInterrupted";
  readonly signal: string;
  constructor(signal: string) {
    super(`${signal} during start-up`);
    this.signal = signal;
  }
}

function configProblem(err: ConfigError): number {
  process.stderr.write(`petrel: the configuration has errors; nothing was started.\n${err.message}\n`);
  return EXIT.config;
}

/** One clear line (or the config errors) and the exit status for what stopped start-up. */
function startupFailed(err: unknown, log: Logger): number {
  if (err instanceof ConfigError) return configProblem(err);
  if (err instanceof StartupInterrupted) {
    log.info({ signal: err.signal }, "stopped during start-up");
    return EXIT.stopped;
  }
  if (err instanceof DataDirInUse) {
    const who = err.pid !== undefined ? `by process ${err.pid} (${err.dir}/petrel.pid)` : "by another process";
    process.stderr.write(`petrel: the data directory ${err.dir} is in use ${who}: is Petrel already running? Nothing was started and nothing changed.\n`);
    return EXIT.dataDirInUse;
  }
  if (err instanceof NodeNameInUse) {
    process.stderr.write(`petrel: ${err.message}. Nothing was started.\n`);
    return EXIT.dataDirInUse;
  }
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; syscall?: string };
  if (e.syscall === "listen" && (e.code === "EADDRINUSE" || e.code === "EACCES" || e.code === "EADDRNOTAVAIL")) {
    const why = e.code === "EADDRINUSE" ? "is already in use (another Petrel or MTA running?)"
      : e.code === "EACCES" ? "needs privileges (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
      : "is not an address of this machine";
    process.stderr.write(`petrel: cannot listen on ${hostPort(e.address ?? "?", e.port ?? 0)}: that address/port ${why}.\n`);
    return EXIT.cannotListen;
  }
  if (err instanceof PrivilegeError) {
    process.stderr.write(`petrel: ${err.message}\n`);
    return EXIT.noPermission;
  }
  throw err;
}

function summary(config: Config, mta: Mta, noUsers: boolean): string {
  const server = mta.smtp;
  const lines = [`Petrel is running as ${config.hostname}; data in ${config.dataDir}`];
  for (const l of server.listeners) {
    const what = l.role === "mx" ? "incoming mail (port 25 role)" : l.role === "submission" ? "submission, STARTTLS + AUTH" : "submission, implicit TLS + AUTH";
    lines.push(`  listening on ${hostPort(l.address, l.port)}  ${what}`);
  }
  const mx = server.listeners.find((l) => l.role === "mx");
  const domain = config.domains[0] ?? config.hostname;
  if (mx) {
    lines.push("Send a test message:");
    lines.push(`  swaks --server ${hostPort(mx.address, mx.port)} --to postmaster@${domain}`);
  }
  lines.push(`Local mail is delivered to Maildirs in ${config.dataDir}/mail/<domain>/<user>/.`);
  // In a clone the command is bin/petrel; installed from the package, petrel on the PATH.
  const petrel = import.meta.url.endsWith(".ts") ? "bin/petrel" : "petrel";
  if (noUsers) lines.push(`No users yet: add one to log in on the submission ports:  ${petrel} user add you@${domain}`);
  lines.push("Stop with Ctrl-C (SIGINT) or SIGTERM.");
  return lines.join("\n") + "\n";
}

