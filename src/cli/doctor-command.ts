/**
 * `petrel doctor [--config FILE]`: check the configuration, the running
 * server and the world around it (src/diagnostics/doctor.ts), each finding
 * OK / INFO / WARN / FAIL with one line on how to fix it.
 *
 * Exit statuses: 0 nothing wrong, 1 warnings, 2 failures (the worst
 * finding), 64 usage error, 78 the configuration does not load.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import pino from "pino";
import { request } from "../admin/control-socket.ts";
import type { ServerStatus } from "../admin/server-status.ts";
import { parseServer } from "../client/send.ts";
import { ConfigError } from "../config/config-error.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { createResolver } from "../dns/resolver.ts";
import { runDoctor } from "../diagnostics/doctor.ts";
import { exitStatus, formatFindings, worstSeverity } from "../diagnostics/finding.ts";
import { openAccounts } from "../mta.ts";
import { openDatabase } from "../storage/postgres/open-database.ts";
import { PostgresDkimKeyStore } from "../storage/postgres/dkim-key-store.ts";
import { nodeName } from "../storage/postgres/node-name.ts";
import type { PostgresPool } from "../storage/postgres/postgres-pool.ts";
import type { Io } from "./queue-commands.ts";

export const DOCTOR_USAGE = `Usage: petrel doctor [--config FILE] [options]
  --probe HOST[:PORT]   where to test outbound port 25 (default: the smarthost, else an MX of gmail.com)
  --timeout SECONDS     for each network test (default 10)
  --dns SERVER          ask this DNS server instead of the configured ones (repeatable)
  --json                the findings as JSON
Exit status: 0 all good, 1 warnings, 2 failures, 64 usage error, 78 configuration error.
`;

const USAGE_ERROR = 64;

export async function doctorCommand(argv: readonly string[], io: Io): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv], strict: true,
      options: {
        config: { type: "string", short: "c" }, probe: { type: "string" }, timeout: { type: "string" },
        dns: { type: "string", multiple: true }, json: { type: "boolean" }, help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    return usage(io, (err as Error).message);
  }
  if (values.help) {
    io.stdout.write(DOCTOR_USAGE);
    return 0;
  }
  const timeout = values.timeout === undefined ? 10 : Number(values.timeout);
  if (!(timeout > 0 && timeout <= 600)) return usage(io, `--timeout must be a number of seconds between 0 and 600, not "${values.timeout}"`);
  let probe: { host: string; port: number } | undefined;
  if (values.probe !== undefined) {
    try {
      const p = parseServer(values.probe, "none", 25);
      probe = { host: p.host, port: p.port };
    } catch (err) {
      return usage(io, `--probe: ${(err as Error).message}`);
    }
  }
  let config: Config;
  try {
    config = await loadConfig(values.config, { checkFiles: false });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`petrel doctor: the configuration has errors — fix these first:\n${err.message}\n`);
    return 78;
  }
  let resolver;
  try {
    resolver = createResolver({ servers: values.dns ?? config.dns.servers });
  } catch (err) {
    return usage(io, `--dns: ${(err as Error).message}`);
  }
  // The cluster's database, read as it is (a diagnosis never migrates a schema); none when it does not open.
  const database = config.storage.kind === "postgres"
    ? await openDatabase({ ...config.storage, migrate: false }, { info: () => {}, error: () => {} }).catch(() => null)
    : null;
  try {
    const controlSocket = join(config.dataDir, "control.sock");
    const status = await askStatus(controlSocket);
    const domains = await localDomains(config, database);
    const dkimKeys = database && config.storage.kind === "postgres" ? new PostgresDkimKeyStore({ pool: database, node: nodeName(config.storage) }) : undefined;
    const findings = await runDoctor({ config, status, controlSocket, domains, resolver, probe, timeoutMs: timeout * 1000, now: Date.now(), ...(dkimKeys ? { dkimKeys } : {}) });
    io.stdout.write(values.json ? JSON.stringify({ findings, worst: worstSeverity(findings) }, null, 2) + "\n" : formatFindings(findings));
    return exitStatus(findings);
  } finally {
    resolver.close();
    await database?.end();
  }
}

/** The running server's status, or null when none answers (or it answers oddly: that is reported as not running properly). */
async function askStatus(socket: string): Promise<ServerStatus | null> {
  try {
    const r = await request(socket, { op: "status" }, 10_000);
    return r?.ok ? (r.result as ServerStatus) : null;
  } catch {
    return null;
  }
}

/**
 * The config's domains and those added with `petrel domain add` (accounts.json, or the cluster's
 * database — read as it is: a diagnosis never migrates a schema), each once.
 */
async function localDomains(config: Config, database: PostgresPool | null): Promise<string[]> {
  try {
    if (config.storage.kind === "postgres" && database === null) return [...config.domains];
    const accounts = await openAccounts(config, pino({ level: "silent" }), database, false);
    return [...new Set([...config.domains, ...await accounts.listDomains()])];
  } catch {
    return [...config.domains];
  }
}

function usage(io: Io, message: string): number {
  io.stderr.write(`petrel doctor: ${message}\n\n${DOCTOR_USAGE}`);
  return USAGE_ERROR;
}
