import * as net from "node:net";
import { chmod, unlink } from "node:fs/promises";
import type { Logger } from "pino";
import type { QueueManager } from "../queue/queue-manager.ts";
import type { QueuePage, QueueTotals } from "../queue/queue-report.ts";
import { isQueueId } from "../spool/queue-id.ts";
import type { ServerStatus } from "./server-status.ts";
import type { ReloadReport } from "../config/reload-plan.ts";
import { ConfigError } from "../config/config-error.ts";

/**
 * A local control channel for the `petrel` CLI while `petrel serve` runs
 * (the role Postfix's public/ fifos play for postqueue and postsuper): a
 * UNIX socket in the data directory, readable only by its owner, one JSON
 * request and one JSON answer per line. It calls the same QueueManager
 * methods the CLI calls when no server is running.
 */

/** Operations on the queue, which the CLI can also run on the files when no server runs. */
export type QueueRequest =
  /** One page of messages after `after` (queue id order), at most `limit`; `totals`: count the whole queue too. */
  | { op: "list"; after?: string; limit?: number; totals?: boolean }
  | { op: "summary" }
  | { op: "show"; id: string }
  | { op: "retry"; id: string | "all" }
  | { op: "hold"; id: string }
  | { op: "release"; id: string }
  | { op: "delete"; id: string };

/** What only a running server answers: what it says about itself, and reading its configuration again. */
export type ControlRequest = QueueRequest | { op: "status" } | { op: "reload" };

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string };

/** A page of `list` holds at most this many messages, so an answer stays a few megabytes at most. */
export const PAGE_LIMIT = 5000;

/** What `list` answers. */
export interface ListResult extends QueuePage {
  readonly totals?: QueueTotals;
}

/** The operations, shared by the socket server and the CLI's offline mode. */
export async function execute(queue: QueueManager, req: QueueRequest): Promise<ControlResponse> {
  if (req.op === "list") {
    if (req.after !== undefined && !isQueueId(req.after)) return { ok: false, error: `not a queue id: ${JSON.stringify(req.after)}` };
    const limit = Math.max(1, Math.min(PAGE_LIMIT, Math.floor(Number(req.limit ?? PAGE_LIMIT)) || PAGE_LIMIT));
    const page = await queue.page(req.after ?? null, limit);
    const result: ListResult = req.totals ? { ...page, totals: await queue.totals() } : page;
    return { ok: true, result };
  }
  if (req.op === "summary") return { ok: true, result: await queue.summary() };
  if (!(req.op === "retry" && req.id === "all") && !isQueueId(req.id)) {
    return { ok: false, error: `not a queue id: ${JSON.stringify(req.id)}` };
  }
  switch (req.op) {
    case "show": {
      const m = await queue.get(req.id);
      return m ? { ok: true, result: m } : { ok: false, error: `no message ${req.id} in the queue` };
    }
    case "retry": {
      const done = await queue.retry(req.id);
      if (!done) return { ok: false, error: `no message ${req.id} in the queue` };
      if (req.id !== "all" && done.held.length > 0) {
        return { ok: false, error: `message ${req.id} is on hold, so nothing was scheduled; release it first: petrel queue release ${req.id}` };
      }
      return { ok: true, result: done };
    }
    case "hold":
    case "release":
    case "delete": {
      const done = await queue[req.op](req.id);
      return done ? { ok: true, result: true } : { ok: false, error: `no message ${req.id} in the queue` };
    }
    default:
      return { ok: false, error: "unknown operation" };
  }
}

/**
 * `status` answers what the running server says about itself (`petrel
 * status`), `reload` reads the configuration again (`petrel reload`: what
 * was applied, what needs a restart, or the configuration's errors); the
 * other operations are the queue's.
 */
export async function startControlSocket(
  path: string, queue: QueueManager, log: Logger, status?: () => Promise<ServerStatus>, reload?: () => Promise<ReloadReport>,
): Promise<{ close(): Promise<void> }> {
  await unlink(path).catch(() => {});
  const server = net.createServer((socket) => {
    let buf = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > 64 * 1024) return socket.destroy();
      const nl = buf.indexOf("\n");
      if (nl === -1) return;
      const line = buf.slice(0, nl);
      buf = "";
      let req: ControlRequest;
      try {
        req = JSON.parse(line) as ControlRequest;
      } catch {
        socket.end(JSON.stringify({ ok: false, error: "bad request" }) + "\n");
        return;
      }
      const answer: Promise<ControlResponse> = req?.op === "status"
        ? status ? status().then((result) => ({ ok: true, result })) : Promise.resolve({ ok: false, error: "status is not available" })
        : req?.op === "reload" ? reloaded(reload)
        : execute(queue, req);
      answer.then(
        (res) => socket.end(JSON.stringify(res) + "\n"),
        (err) => {
          log.error({ err }, "control request failed");
          socket.end(JSON.stringify({ ok: false, error: String(err) }) + "\n");
        },
      );
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return {
    close: () => new Promise<void>((resolve) => server.close(() => {
      void unlink(path).catch(() => {}).then(() => resolve());
    })),
  };
}

/** A reload's answer: the report, or the configuration's errors (the server keeps running with the old one). */
async function reloaded(reload: (() => Promise<ReloadReport>) | undefined): Promise<ControlResponse> {
  if (!reload) return { ok: false, error: "reload is not available" };
  try {
    return { ok: true, result: await reload() };
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, error: `the configuration has errors; the server keeps running with the one it had.\n${err.message}` };
    throw err;
  }
}

/** Client side: send one request; null when no server is listening (the CLI then works offline). */
export function request(path: string, req: ControlRequest, timeoutMs = 30_000): Promise<ControlResponse | null> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    let buf = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from the running server on ${path}`));
    }, timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(JSON.stringify(req) + "\n"));
    socket.on("data", (c: string) => (buf += c));
    socket.on("end", () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlResponse);
      } catch {
        reject(new Error("garbled answer from the running server"));
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === "ENOENT" || err.code === "ECONNREFUSED") resolve(null);
      else reject(err);
    });
  });
}
