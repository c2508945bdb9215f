/**
 * The owner's side of a `RemoteSpool` (remote-spool.ts), one per process
 * that writes through it (an SMTP worker): each message is written into the
 * spool here, in the order its chunks arrive, and committed through the
 * spool's group commit with everyone else's; once durable it is handed on
 * (`onCommitted`: the queue manager), and only then is the writer told
 * `committed` (so its 250 follows). A writer process that dies takes nothing
 * committed with it: its unfinished messages are aborted here.
 */
import type { Envelope } from "../mail/envelope.ts";
import { toSpoolError, type QueueId, type Spool, type SpoolWriter } from "./spool.ts";
import type { SpoolReply, SpoolRequest } from "./remote-spool.ts";

interface OpenMessage {
  readonly writer: SpoolWriter;
  /** The writes so far, in order; the first failure is kept for the commit. */
  tail: Promise<void>;
  failure: unknown;
  /** Its commit has begun: it finishes (and the message is queued) even if the worker dies meanwhile. */
  committing: boolean;
}

export class SpoolHost {
  private readonly spool: Spool;
  private readonly onCommitted: (id: QueueId) => void;
  private readonly reply: (message: SpoolReply) => void;
  private readonly open = new Map<QueueId, OpenMessage>();

  constructor(options: { spool: Spool; onCommitted: (id: QueueId) => void; reply: (message: SpoolReply) => void }) {
    this.spool = options.spool;
    this.onCommitted = options.onCommitted;
    this.reply = options.reply;
  }

  /** Messages being written through it now. */
  get size(): number {
    return this.open.size;
  }

  /** One request from the writing process; true when it was one. */
  handle(m: { readonly t: string }): boolean {
    if (!isSpoolRequest(m)) return false;
    switch (m.t) {
      case "reserve":
        void this.reserve(m.req, m.count);
        return true;
      case "write":
        this.append(m.id, m.chunks);
        return true;
      case "commit":
        this.append(m.id, m.chunks);
        void this.commit(m.req, m.id, m.envelope);
        return true;
      case "abort": {
        const o = this.open.get(m.id);
        if (o) {
          this.open.delete(m.id);
          void o.tail.then(() => o.writer.abort()).catch(() => {});
        }
        return true;
      }
    }
  }

  /** The writing process is gone: what it had not committed was never acknowledged, and is dropped. */
  async abortAll(): Promise<void> {
    const all = [...this.open.entries()].filter(([, o]) => !o.committing);
    for (const [id] of all) this.open.delete(id);
    await Promise.all(all.map(([, o]) => o.tail.then(() => o.writer.abort()).catch(() => {})));
  }

  private async reserve(req: number, count: number): Promise<void> {
    const ids: QueueId[] = [];
    try {
      for (let i = 0; i < Math.min(count, MAX_RESERVE); i++) {
        const writer = await this.spool.create();
        this.open.set(writer.id, { writer, tail: Promise.resolve(), failure: undefined, committing: false });
        ids.push(writer.id);
      }
    } catch (err) {
      if (ids.length === 0) return this.fail(req, "cannot start a message in the spool", err);
    }
    this.reply({ t: "reserved", req, ids });
  }

  /** Body bytes, written in the order they came, after what came before. */
  private append(id: QueueId, chunks: readonly Buffer[]): void {
    const o = this.open.get(id);
    if (!o || chunks.length === 0) return;
    o.tail = o.tail.then(async () => {
      for (const chunk of chunks) if (o.failure === undefined) await o.writer.write(chunk);
    }).catch((err: unknown) => {
      o.failure ??= err;
    });
  }

  private async commit(req: number, id: QueueId, envelope: Envelope): Promise<void> {
    const o = this.open.get(id);
    if (!o) return this.reply({ t: "failed", req, message: `no message ${id} is being received` });
    o.committing = true;
    try {
      await o.tail;
      if (o.failure !== undefined) throw o.failure;
      await o.writer.commit(envelope);
    } catch (err) {
      this.open.delete(id);
      await o.writer.abort().catch(() => {});
      return this.fail(req, "cannot store the message", err);
    }
    this.open.delete(id);
    this.onCommitted(id);
    this.reply({ t: "committed", req });
  }

  private fail(req: number, what: string, err: unknown): void {
    const e = toSpoolError(what, err);
    this.reply({ t: "failed", req, message: e.message, ...(e.code ? { code: e.code } : {}) });
  }
}

const REQUESTS: ReadonlySet<string> = new Set<SpoolRequest["t"]>(["reserve", "write", "commit", "abort"]);
/** Entries one request may open ahead (each holds little: no bytes until written). */
const MAX_RESERVE = 64;

function isSpoolRequest(m: { readonly t: string }): m is SpoolRequest {
  return REQUESTS.has(m.t);
}
