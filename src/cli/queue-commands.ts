import { join } from "node:path";
import { readFirstLine } from "./prompt.ts";
import { parseArgs } from "node:util";
import pino from "pino";
import { loadConfig } from "../config/load.ts";
import { ConfigError } from "../config/config-error.ts";
import { openAccounts, openQueue } from "../mta.ts";
import { execute, PAGE_LIMIT, request, type ControlResponse, type ListResult, type QueueRequest } from "../admin/control-socket.ts";
import { AGE_BUCKET_BOUNDS, formatList, formatSummary, type QueueListItem, type SummaryRow } from "../queue/queue-report.ts";
import type { QueueManager, RetryResult } from "../queue/queue-manager.ts";
import type { Spool } from "../spool/spool.ts";
import type { Config } from "../config/schema.ts";
import { isDirectory } from "../system/data-dir.ts";
import { DataDirInUse, lockDataDir } from "../system/data-dir-lock.ts";
import { dropPrivileges, PrivilegeError, resolveRunAs } from "../system/privileges.ts";
import { openDatabase } from "../storage/postgres/open-database.ts";

/** sysexits EX_TEMPFAIL, as `petrel serve` when the data directory is in use. */
const EXIT_DATA_DIR_IN_USE = 75;

/**
 * `petrel queue …`: the queue tools (Postfix's mailq, postqueue, postsuper
 * and qshape in one). With a server running they go through its control
 * socket; without one they open the queue on disk themselves, under the data
 * directory's lock (exit 75 when another process holds it). With
 * storage.kind postgres they open the cluster's queue in the database — no
 * server on this host needed — under a lease holder of their own: a message
 * a live node holds is that node's to change (the request goes through the
 * database, queue-manager.ts `viaHolder`), and the listing names the node
 * holding each message. Either way the same QueueManager methods do the work.
 */

export interface Io {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown };
}

/** `petrel queue list` shows this many messages unless told otherwise. */
const LIST_DEFAULT = 100;

const USAGE = `Usage: petrel queue <command> [--config FILE] [--json]
  list [--limit N | --all]
                       the oldest messages in the queue (100 unless --limit N; --all: every one)
                       with each recipient's state and last error
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
      options: {
        config: { type: "string", short: "c" }, json: { type: "boolean" }, all: { type: "boolean" }, yes: { type: "boolean", short: "y" },
        limit: { type: "string" },
      },
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
  let limit = LIST_DEFAULT;
  if (values.limit !== undefined) {
    limit = Number(values.limit);
    if (sub !== "list" || !Number.isInteger(limit) || limit < 1) {
      io.stderr.write(sub !== "list" ? "petrel queue: --limit goes with list\n" : `petrel queue list: --limit wants a whole number of messages, 1 or more (got ${values.limit})\n`);
      return 2;
    }
  }
  switch (sub) {
    case "list":
      req = { op: "list", limit: values.all ? PAGE_LIMIT : Math.min(limit, PAGE_LIMIT), totals: true };
      break;
    case "summary":
      req = { op: "summary" };
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
  const now = Date.now();
  try {
    res = await withQueue(config, async (call) => {
      if (req.op !== "list") return call(req);
      // Page after page; only --all (or a --limit past one page) asks for more than the first.
      const want = values.all ? Infinity : limit;
      const first = await call(req);
      if (!first.ok) return first;
      let page = first.result as ListResult;
      let shown = 0;
      // Written page by page, JSON too (one array, as JSON.stringify(items, null, 2) would print it): memory stays one page.
      const write = (items: readonly QueueListItem[]): void => {
        if (values.json) {
          for (const item of items) io.stdout.write((shown++ === 0 ? "[\n  " : ",\n  ") + JSON.stringify(item, null, 2).replace(/\n/g, "\n  "));
          return;
        }
        shown += items.length;
        if (items.length > 0) io.stdout.write(formatList(items, now).replace(/-- [^\n]*\n$/, ""));
      };
      for (;;) {
        write(page.items.slice(0, want - shown));
        if (page.next === null || shown >= want) break;
        const more = await call({ op: "list", after: page.next, limit: Math.min(PAGE_LIMIT, want - shown) });
        if (!more.ok) return more;
        page = more.result as ListResult;
      }
      const totals = (first.result as ListResult).totals;
      if (values.json) io.stdout.write(shown === 0 ? "[]\n" : "\n]\n");
      else if (totals === undefined || totals.messages === 0) io.stdout.write("Mail queue is empty\n");
      else {
        const w = totals.waiting;
        const waiting = w.queued + w.delivering + w.deferred;
        const rest = totals.messages - shown;
        io.stdout.write(`-- ${totals.messages} message${totals.messages === 1 ? "" : "s"}, ${waiting} recipient${waiting === 1 ? "" : "s"} waiting` +
          (rest > 0 ? `; the oldest ${shown} shown (petrel queue list --all for every one, --limit N for more)` : "") + "\n");
      }
      return { ok: true, result: null };
    });
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
  if (sub === "list") return 0;
  if (values.json) {
    const out = sub === "summary" ? { ageBuckets: AGE_BUCKET_BOUNDS, rows: res.result as SummaryRow[] } : res.result;
    io.stdout.write(JSON.stringify(out, null, 2) + "\n");
    return 0;
  }
  switch (sub) {
    case "summary":
      io.stdout.write(formatSummary(res.result as SummaryRow[]));
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

type Call = (req: QueueRequest) => Promise<ControlResponse>;

/** The queue opened by a tool: started (and, alone on its files, reconciled with the spool first). */
async function startOffline({ spool, queue }: { spool: Spool; queue: QueueManager }, reconciled: boolean): Promise<{ call: Call; close(): Promise<void> }> {
  await spool.open();
  try {
    await queue.start();
    if (reconciled) await queue.recovered();
  } catch (err) {
    await queue.stop().catch(() => {});
    await spool.close();
    throw err;
  }
  return {
    call: (req) => execute(queue, req),
    async close() {
      await queue.stop();
      await spool.close();
    },
  };
}

/** The cluster's queue in PostgreSQL: the state is the database's, so no data directory lock (the leases keep the nodes apart). */
async function openCluster(config: Config): Promise<{ call: Call; close(): Promise<void> }> {
  if (config.storage.kind !== "postgres") throw new Error("not a cluster");
  const runAs = process.getuid!() === 0 ? await resolveRunAs(config) : undefined;
  if (runAs) dropPrivileges(runAs);
  const log = pino({ level: "silent" });
  const database = await openDatabase(config.storage, log);
  try {
    // No LISTEN: a queue tool runs for a moment.
    const accounts = await openAccounts(config, log, database, false);
    const opened = await startOffline(await openQueue(config, { log, accounts, database, toolOf: `queue-tool-${process.pid}` }), false);
    return {
      call: opened.call,
      async close() {
        try {
          await opened.close();
          await accounts.close?.();
        } finally {
          await database.end();
        }
      },
    };
  } catch (err) {
    await database.end();
    throw err;
  }
}

/**
 * Run `fn` against the running server if there is one (its control socket),
 * else against the queue on disk — holding the data directory's lock, as the
 * server does, so that a server starting meanwhile waits for nothing and
 * finds consistent files; and as the configured `user:` when run as root, so
 * that every file stays the server's. Offline, the queue is opened once for
 * every request `fn` makes, after the spool is reconciled with the queue
 * store (queue/reconcile.ts).
 */
async function withQueue<T>(config: Config, fn: (call: Call) => Promise<T>): Promise<T> {
  const socket = join(config.dataDir, "control.sock");
  const at: { mode: "server" | "offline" | null; offline: { call: Call; close(): Promise<void> } | null } = { mode: null, offline: null };
  const call: Call = async (req) => {
    if (at.mode !== "offline") {
      const res = await request(socket, req);
      if (res) {
        at.mode = "server";
        return res;
      }
      if (at.mode === "server") throw new Error(`the running server stopped answering on ${socket}`);
      at.mode = "offline";
    }
    at.offline ??= await openOffline(config);
    return at.offline.call(req);
  };
  try {
    return await fn(call);
  } finally {
    await at.offline?.close();
  }
}

async function openOffline(config: Config): Promise<{ call: Call; close(): Promise<void> }> {
  if (config.storage.kind === "postgres") return openCluster(config);
  if (!(await isDirectory(config.dataDir))) {
    return {
      call: async (req) => req.op === "list" ? { ok: true, result: { items: [], next: null } satisfies ListResult }
        : req.op === "summary" ? { ok: true, result: [] }
        : req.op === "retry" && req.id === "all" ? { ok: true, result: { scheduled: 0, held: [] } satisfies RetryResult }
        : { ok: false, error: `no message ${req.id} in the queue (no data directory at ${config.dataDir})` },
      close: async () => {},
    };
  }
  const lock = await lockDataDir(config.dataDir);
  try {
    const runAs = process.getuid!() === 0 ? await resolveRunAs(config) : undefined;
    if (runAs) dropPrivileges(runAs);
    const log = pino({ level: "silent" });
    const opened = await startOffline(await openQueue(config, { log, accounts: await openAccounts(config, log) }), true);
    return {
      call: opened.call,
      async close() {
        try {
          await opened.close();
        } finally {
          await lock.release();
        }
      },
    };
  } catch (err) {
    await lock.release();
    throw err;
  }
}
