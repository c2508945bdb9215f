import pino from "pino";
import { loadConfig } from "../config/load.ts";
import { ConfigError } from "../config/config-error.ts";
import { startMta, type Mta } from "../mta.ts";

/** `petrel serve`: load the config, start listening, stop cleanly on SIGTERM/SIGINT. */
export async function serve(options: { configPath?: string }): Promise<number> {
  let config;
  try {
    config = await loadConfig(options.configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`petrel: the configuration has errors; nothing was started.\n${err.message}\n`);
      return 78; // EX_CONFIG
    }
    throw err;
  }
  const log = pino({ level: config.log.level, base: { pid: process.pid } });
  // Signals are caught from the start: a SIGTERM while starting up still
  // shuts down cleanly once the listeners are up.
  let signalled: string | null = null;
  let onSignal: (signal: string) => void = (signal) => {
    signalled = signal;
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
  let mta: Mta;
  try {
    mta = await startMta(config, { log });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
    if (e.code === "EADDRINUSE" || e.code === "EACCES" || e.code === "EADDRNOTAVAIL") {
      const why = e.code === "EADDRINUSE" ? "is already in use (another Petrel or MTA running?)"
        : e.code === "EACCES" ? "needs privileges (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        : "is not an address of this machine";
      process.stderr.write(`petrel: cannot listen on ${e.address}:${e.port}: that address/port ${why}.\n`);
      return 71;
    }
    throw err;
  }
  const server = mta.smtp;
  const lines = [`Petrel is running as ${config.hostname}; data in ${config.dataDir}`];
  for (const l of server.listeners) {
    const what = l.role === "mx" ? "incoming mail (port 25 role)" : l.role === "submission" ? "submission, STARTTLS + AUTH" : "submission, implicit TLS + AUTH";
    lines.push(`  listening on ${l.address}:${l.port}  ${what}`);
  }
  const mx = server.listeners.find((l) => l.role === "mx");
  if (mx) {
    const domain = config.domains[0] ?? config.hostname;
    lines.push("Send a test message:");
    lines.push(`  swaks --server ${mx.address}:${mx.port} --to postmaster@${domain}`);
  }
  lines.push(`Local mail is delivered to Maildirs in ${config.dataDir}/mail/<domain>/<user>/.`);
  if ((await mta.accounts.listUsers()).length === 0) {
    const domain = config.domains[0] ?? config.hostname;
    lines.push(`No users yet: add one to log in on the submission ports:  bin/petrel user add you@${domain}`);
  }
  lines.push("Stop with Ctrl-C (SIGINT) or SIGTERM.");
  process.stderr.write(lines.join("\n") + "\n");

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "shutting down");
      mta.close().then(() => resolve(0), (err) => {
        log.error({ err }, "shutdown failed");
        resolve(1);
      });
    };
    onSignal = stop;
    if (signalled) stop(signalled);
    process.on("SIGHUP", () => void server.tls.reload());
  });
}
