import { join } from "node:path";
import { readFirstLine } from "./prompt.ts";
import { parseArgs } from "node:util";
import pino from "pino";
import { loadConfig } from "../config/load.ts";
import { ConfigError } from "../config/config-error.ts";
import { openAccounts, openQueue } from "../mta.ts";
import { execute, request, type QueueRequest, type ControlResponse } from "../admin/control-socket.ts";
import { formatList, formatSummary, summarize, summaryReport } from "../queue/queue-report.ts";
import type { QueueListItem, RetryResult } from "../queue/queue-manager.ts";
import type { Config } from "../config/schema.ts";
import { isDirectory } from "../system/data-dir.ts";
import { DataDirInUse, lockDataDir } from "../system/data-dir-lock.ts";
import { dropPrivileges, PrivilegeError, resolveRunAs } from "../system/privileges.ts";

/** sysexits EX_TEMPFAIL, as `petrel serve` when the data directory is in use. */
const EXIT_DATA_DIR_IN_USE = 75;

/**
 * `petrel queue …`: the queue tools (Postfix's mailq, postqueue, postsuper
 * and qshape in one). With a server running they go through its control
 * socket; without one they open the queue on disk themselves, under the data
 * directory's lock (exit 75 when another process holds it). Either way the
 * same QueueManager methods do the work.
 */

export interface Io {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown };
}

const USAGE = `Usage: petrel queue <command> [--config FILE] [--json]
  list                 messages in the queue with each recipient's state and last error
  show ID              one message: envelope, recipients, attempt history
  summary              waiting recipients by destination domain and age in minutes (like qshape;
                       --json gives each column's bounds as ageBuckets)
  retry ID | --all     try deferred recipients again now (held messages stay held)
  hold ID              no delivery attempts until released
  release ID           undo hold
  delete ID [--yes]    remove a message without a bounce (asks unless --yes)
`;

export async function queueCommand(argv: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: "string", short: "c" }, json: { type: "boolean" }, all: { type: "boolean" }, yes: { type: "boolean", short: "y" } },
    });
  } catch (err) {
    io.stderr.write(`petrel queue: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [sub, id, ...extra] = positionals;
  if (extra.length > 0) {
    io.stderr.write(`petrel queue: unexpected arguments: ${extra.join(" ")}\n`);
    return 2;
  }
  let req: QueueRequest;
  switch (sub) {
    case "list":
    case "summary":
      req = { op: "list" };
      break;
    case "show":
    case "hold":
    case "release":
    case "delete":
      if (!id) {
        io.stderr.write(`petrel queue ${sub}: which message? Give its queue id (see: petrel queue list)\n`);
        return 2;
      }
      req = { op: sub, id };
      break;
    case "retry":
      if (!id && !values.all) {
        io.stderr.write("petrel queue retry: give a queue id, or --all\n");
        return 2;
      }
      req = { op: "retry", id: values.all ? "all" : id! };
      break;
    default:
      io.stderr.write(sub ? `petrel queue: unknown command '${sub}'\n\n${USAGE}` : USAGE);
      return sub ? 2 : 0;
  }
  let config: Config;
  try {
    config = await loadConfig(values.config, { checkFiles: false });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`petrel queue: the configuration has errors; nothing was done.\n${err.message}\n`);
    return 78;
  }
  if (req.op === "delete" && !values.yes) {
    if (!io.stdin.isTTY) {
      io.stderr.write(`petrel queue delete: add --yes to delete ${req.id} without asking\n`);
      return 2;
    }
    io.stderr.write(`Delete message ${req.id} from the queue without notifying the sender? [y/N] `);
    if (!/^y(es)?$/i.test((await readFirstLine(io.stdin)).trim())) {
      io.stderr.write("Nothing deleted.\n");
      return 1;
    }
  }
  let res: ControlResponse;
  try {
    res = await run(config, req);
  } catch (err) {
    if (err instanceof DataDirInUse) {
      io.stderr.write(`petrel queue ${sub}: ${err.message}, and no server answers on ${join(config.dataDir, "control.sock")} (starting or stopping?); nothing was done: try again in a moment\n`);
      return EXIT_DATA_DIR_IN_USE;
    }
    if (err instanceof ConfigError) {
      io.stderr.write(`petrel queue: the configuration has errors; nothing was done.\n${err.message}\n`);
      return 78;
    }
    if (err instanceof PrivilegeError) {
      io.stderr.write(`petrel queue: ${err.message}\n`);
      return 77;
    }
    throw err;
  }
  if (!res.ok) {
    io.stderr.write(`petrel queue ${sub}: ${res.error}\n`);
    return 1;
  }
  const now = Date.now();
  if (values.json) {
    const out = sub === "summary" ? summaryReport(res.result as QueueListItem[], now) : res.result;
    io.stdout.write(JSON.stringify(out, null, 2) + "\n");
    return 0;
  }
  switch (sub) {
    case "list":
      io.stdout.write(formatList(res.result as QueueListItem[], now));
      break;
    case "summary":
      io.stdout.write(formatSummary(summarize(res.result as QueueListItem[], now)));
      break;
    case "show": {
      const m = res.result as { item: QueueListItem; envelope: unknown; history: Record<string, unknown[]> };
      io.stdout.write(formatList([m.item], now).replace(/\n-- .*\n$/, "\n"));
      io.stdout.write(`envelope: ${JSON.stringify(m.envelope, null, 2)}\n`);
      for (const [rcpt, h] of Object.entries(m.history)) {
        io.stdout.write(`history of <${rcpt}>:\n`);
        for (const a of h as { at: number; status: string; enhanced?: string; diagnostic?: string }[]) {
          io.stdout.write(`  ${new Date(a.at).toISOString()}  ${a.status}${a.enhanced ? ` ${a.enhanced}` : ""}${a.diagnostic ? ` ${a.diagnostic}` : ""}\n`);
        }
      }
      break;
    }
    case "retry": {
      const done = res.result as RetryResult;
      io.stdout.write(`${done.scheduled} message(s) scheduled for delivery now\n`);
      if (done.held.length > 0) {
        io.stdout.write(`${done.held.length} message(s) on hold left alone (release with petrel queue release ID): ${done.held.join(" ")}\n`);
      }
      break;
    }
    default:
      io.stdout.write(`${sub === "hold" ? "Held" : sub === "release" ? "Released" : "Deleted"} ${id}\n`);
  }
  return 0;
}

/**
 * Through the running server if there is one, else on the files directly —
 * holding the data directory's lock, as the server does, so that a server
 * starting meanwhile waits for nothing and finds consistent files; and as the
 * configured `user:` when run as root, so that every file stays the server's.
 */
async function run(config: Config, req: QueueRequest): Promise<ControlResponse> {
  const viaServer = await request(join(config.dataDir, "control.sock"), req);
  if (viaServer) return viaServer;
  if (!(await isDirectory(config.dataDir))) {
    return req.op === "list" ? { ok: true, result: [] } : req.op === "retry" && req.id === "all" ? { ok: true, result: { scheduled: 0, held: [] } satisfies RetryResult } : { ok: false, error: `no message ${req.id} in the queue (no data directory at ${config.dataDir})` };
  }
  const lock = await lockDataDir(config.dataDir);
  try {
    const runAs = process.getuid!() === 0 ? await resolveRunAs(config) : undefined;
    if (runAs) dropPrivileges(runAs);
    const log = pino({ level: "silent" });
    const { spool, queue } = await openQueue(config, { log, accounts: openAccounts(config, log) });
    await spool.open();
    try {
      await queue.start();
      return await execute(queue, req);
    } finally {
      await queue.stop();
      await spool.close();
    }
  } finally {
    await lock.release();
  }
}
