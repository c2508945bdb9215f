import { join } from "node:path";
import type { Logger } from "pino";
import type { Config } from "./config/schema.ts";
import { FileSpool } from "./spool/file-spool.ts";
import { FileAccountStore } from "./accounts/file-account-store.ts";
import { SmtpServer } from "./server/smtp-server.ts";
import { QueueManager } from "./queue/queue-manager.ts";
import { QueueStateStore } from "./queue/queue-state.ts";
import { systemClock, type Clock } from "./queue/clock.ts";
import { LocalAgent } from "./delivery/local-agent.ts";
import { LmtpAgent } from "./delivery/lmtp-client.ts";
import { createRouter, remoteUnavailable } from "./delivery/router.ts";
import { createDsnSender } from "./delivery/bounce-agent.ts";
import type { DeliveryAgent } from "./delivery/outcome.ts";
import { startControlSocket } from "./admin/control-socket.ts";

/**
 * Petrel in one process: the composition root that wires the boxes of
 * DESIGN.md together — listener → session → policy → spool → queue manager
 * → agents — from one validated configuration. Nothing here decides
 * anything; it only connects.
 */

export interface MtaOptions {
  readonly log: Logger;
  readonly clock?: Clock;
  /** Remote delivery agent (outbound SMTP); until it exists remote mail stays queued. */
  readonly remote?: DeliveryAgent;
  /** Delay past the soft error limit (tests pass 0). */
  readonly errorSleep?: number;
  /** fsync Maildir files (tests may turn it off for speed). */
  readonly fsync?: boolean;
  /** Listen for the CLI on <dataDir>/control.sock (default true). */
  readonly controlSocket?: boolean;
}

export interface Mta {
  readonly smtp: SmtpServer;
  readonly queue: QueueManager;
  readonly accounts: FileAccountStore;
  close(): Promise<void>;
}

/** The pieces both `petrel serve` and the offline CLI need: spool, accounts, queue. */
export function buildQueue(config: Config, options: Pick<MtaOptions, "log" | "clock" | "remote" | "fsync">): { spool: FileSpool; accounts: FileAccountStore; queue: QueueManager } {
  const log = options.log;
  const clock = options.clock ?? systemClock;
  const spool = new FileSpool(join(config.dataDir, "spool"), { onWarning: (m) => log.warn(m) });
  const accounts = new FileAccountStore({
    dataDir: config.dataDir,
    configDomains: config.domains,
    configUsers: config.users,
    subaddressSeparator: config.delivery.subaddressSeparator,
    onReloadError: (err) => log.error({ err: err.message }, "accounts file unreadable; keeping the last good copy"),
  });
  const local = new LocalAgent({
    maildirRoot: join(config.dataDir, "mail"),
    hostname: config.hostname,
    quotaFull: config.delivery.quotaFull,
    maxReceived: config.delivery.maxReceived,
    quotaFor: userQuota(accounts, config.delivery.quota),
    fsync: options.fsync,
  });
  const lmtp = new Map<string, { agent: DeliveryAgent; server: string }>();
  for (const route of config.delivery.lmtp) {
    const agent = new LmtpAgent({ target: lmtpTarget(route.server), lhloName: config.hostname });
    for (const d of route.domains) lmtp.set(d, { agent, server: route.server });
  }
  const queue = new QueueManager({
    spool,
    state: new QueueStateStore(join(config.dataDir, "queue-state")),
    resolve: (address) => accounts.resolveRecipient(address),
    router: createRouter({ local, remote: options.remote ?? remoteUnavailable, lmtp }),
    sendDsn: createDsnSender({ spool, hostname: config.hostname, now: () => new Date(clock.now()) }),
    clock,
    log: log.child({ component: "queue" }),
    settings: config.queue,
  });
  return { spool, accounts, queue };
}

export async function startMta(config: Config, options: MtaOptions): Promise<Mta> {
  const { spool, accounts, queue } = buildQueue(config, options);
  await spool.open();
  await queue.start();
  let smtp: SmtpServer;
  try {
    smtp = await SmtpServer.start(config, {
      log: options.log,
      spool,
      accounts,
      errorSleep: options.errorSleep,
      onMessage: (id) => queue.enqueue(id),
    });
  } catch (err) {
    await queue.stop();
    await spool.close();
    throw err;
  }
  const control = options.controlSocket === false ? null : await startControlSocket(join(config.dataDir, "control.sock"), queue, options.log);
  let closing: Promise<void> | null = null;
  return {
    smtp, queue, accounts,
    close() {
      closing ??= (async () => {
        await smtp.close();
        await control?.close();
        await queue.stop();
        await spool.close();
      })();
      return closing;
    },
  };
}

/** A user's own quota, else the configured default (0 = unlimited). */
function userQuota(accounts: FileAccountStore, fallback: number): (address: string) => Promise<number | undefined> {
  return async (address) => (await accounts.getUser(address))?.quota ?? (fallback > 0 ? fallback : undefined);
}

function lmtpTarget(server: string): { host: string; port: number } | { path: string } {
  if (server.startsWith("/")) return { path: server };
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(server);
  if (!m) return { host: server, port: 24 };
  return { host: m[1], port: Number(m[2]) };
}
