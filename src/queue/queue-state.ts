import { mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { isQueueId } from "../spool/queue-id.ts";
import type { QueueId } from "../spool/spool.ts";
import type { RecipientKind } from "./ports.ts";

/**
 * The delivery state of each queued message, per recipient, kept beside the
 * spool so it survives a restart. The spool holds what was accepted (never
 * changed); this holds what has happened to it since.
 *
 * Recipient states:
 *   queued → delivering → delivered | deferred | bounced
 *   deferred → delivering (on retry)
 * "delivering" exists only in memory: after a crash it is read back as
 * "queued" (delivery is at-least-once, as in every MTA).
 */

export type RecipientStatus = "queued" | "delivering" | "deferred" | "delivered" | "bounced";

export interface AttemptRecord {
  readonly at: number;
  readonly status: "delivered" | "deferred" | "failed";
  readonly enhanced?: string;
  readonly diagnostic?: string;
}

export interface RecipientState {
  /** Where it is delivered: a local mailbox or an external address (after alias expansion). */
  readonly address: string;
  /** The envelope recipient it came from (Final-Recipient in a DSN). */
  readonly original: string;
  /** A local mailbox, or an address elsewhere (relayed or forwarded by an alias). */
  readonly kind: RecipientKind;
  status: RecipientStatus;
  attempts: number;
  /** When it is due next (ms since epoch). */
  nextAttempt: number;
  lastError?: { enhanced: string; diagnostic: string; at: number; remoteMta?: string; bounceStatus?: string };
  /** The last few attempts, newest last (bounded). */
  history: AttemptRecord[];
  /** A delay warning DSN was sent. */
  delayWarned?: boolean;
}

export interface MessageState {
  readonly id: QueueId;
  /** When the message was accepted (ms). */
  readonly arrival: number;
  held: boolean;
  /** Why a check quarantined it on arrival; cleared when a person holds or releases it. */
  holdReason?: string;
  recipients: RecipientState[];
}

export const HISTORY_LIMIT = 10;

export function isFinal(r: RecipientState): boolean {
  return r.status === "delivered" || r.status === "bounced";
}

/**
 * One small JSON file per message in `<dataDir>/queue-state/`, replaced
 * atomically (write, fsync, rename). Losing the newest state in a power
 * failure can only cause a repeated delivery attempt, never a lost message:
 * the message itself stays in the spool until every recipient is final.
 */
export class QueueStateStore {
  readonly dir: string;
  private readonly fsync: boolean;
  private counter = 0;

  constructor(dir: string, options: { fsync?: boolean } = {}) {
    this.dir = dir;
    this.fsync = options.fsync ?? true;
  }

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // Leftover temporary files from a crash mid-write are never whole states.
    for (const name of await readdir(this.dir)) {
      if (name.endsWith(".tmp")) await unlink(join(this.dir, name)).catch(() => {});
    }
  }

  async load(id: QueueId): Promise<MessageState | null> {
    if (!isQueueId(id)) throw new Error(`invalid queue id: ${id}`);
    let text: string;
    try {
      text = await readFile(join(this.dir, `${id}.json`), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
    try {
      const state = JSON.parse(text) as MessageState;
      for (const r of state.recipients) if (r.status === "delivering") r.status = "queued";
      return state;
    } catch {
      return null; // unreadable: the queue rebuilds it from the envelope
    }
  }

  async save(state: MessageState): Promise<void> {
    const final = join(this.dir, `${state.id}.json`);
    const tmp = join(this.dir, `${state.id}.${process.pid}.${this.counter++}.tmp`);
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writeFile(JSON.stringify(state));
      if (this.fsync) await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, final);
  }

  async remove(id: QueueId): Promise<void> {
    await unlink(join(this.dir, `${id}.json`)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }

  /** Ids that have a state file (used to clean states whose message is gone). */
  async ids(): Promise<QueueId[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -5)).filter(isQueueId);
  }
}
