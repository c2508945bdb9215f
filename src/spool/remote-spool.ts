/**
 * A spool in another process (an SMTP worker's view of the main process's
 * spool, src/workers/): a `Spool` whose writers send each step of a new
 * message over a channel to a `SpoolHost` (spool-host.ts) there. Only new
 * messages are written this way (create, write, commit, abort); reading and
 * removing belong to the process that owns the spool, so those methods
 * refuse. `commit()` resolves only when the owner's spool has made the
 * message durable and handed it on — the promise `Spool` makes, kept across
 * the process boundary.
 *
 * Few messages cross per message, because each costs both processes a
 * serialization and a system call: entries are opened ahead, a few at a
 * time (`reserve`), so `create()` rarely waits for the owner; a body is
 * sent with its commit unless it outgrows INLINE_BODY, when it streams.
 */
import type { Readable } from "node:stream";
import type { Envelope } from "../mail/envelope.ts";
import { SpoolError, type QueueId, type Spool, type SpoolWriter } from "./spool.ts";

/** A step of a new message, to the spool's owner. */
export type SpoolRequest =
  | { readonly t: "reserve"; readonly req: number; readonly count: number }
  | { readonly t: "write"; readonly id: QueueId; readonly chunks: readonly Buffer[] }
  | { readonly t: "commit"; readonly req: number; readonly id: QueueId; readonly envelope: Envelope; readonly chunks: readonly Buffer[] }
  | { readonly t: "abort"; readonly id: QueueId };

/** The owner's answer to a request that waits for one. */
export type SpoolReply =
  | { readonly t: "reserved"; readonly req: number; readonly ids: readonly QueueId[] }
  | { readonly t: "committed"; readonly req: number }
  | { readonly t: "failed"; readonly req: number; readonly message: string; readonly code?: string };

/** The way to the spool's owner: `send` resolves once the request is handed to the pipe. */
export interface SpoolChannel {
  send(request: SpoolRequest): Promise<void>;
}

/** Body bytes kept here until commit; a larger body streams to the owner as it comes. */
const INLINE_BODY = 64 * 1024;
/** Entries opened ahead at a time. */
const RESERVE = 8;
/** Batches a create() may wait for before it gives up (each batch serves every waiter it can). */
const MAX_ROUNDS = 100;
/** An entry opened ahead is used within this long, or given back: its queue id says when the message came. */
const RESERVED_FRESH_MS = 1000;

export class RemoteSpool implements Spool {
  private readonly channel: SpoolChannel;
  private nextReq = 1;
  private readonly pending = new Map<number, { resolve: (r: SpoolReply) => void; reject: (e: Error) => void }>();
  private readonly reserved: { id: QueueId; at: number }[] = [];
  private reserving: Promise<void> | null = null;
  /** create() calls waiting for an entry now. */
  private waiting = 0;
  private closed = false;

  constructor(channel: SpoolChannel) {
    this.channel = channel;
  }

  /** The owner's answer to one of this spool's requests. */
  answer(reply: SpoolReply): void {
    const p = this.pending.get(reply.req);
    if (!p) return;
    this.pending.delete(reply.req);
    p.resolve(reply);
  }

  /** The owner is gone: nothing in flight can be committed any more. */
  disconnect(): void {
    this.closed = true;
    this.reserved.length = 0;
    for (const p of this.pending.values()) p.reject(gone());
    this.pending.clear();
  }

  async open(): Promise<void> {}

  async create(): Promise<SpoolWriter> {
    if (this.closed) throw gone();
    this.waiting++;
    try {
      // Sessions waiting together share each batch, and the next batch is sized for all of them.
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const id = this.takeFresh();
        if (id !== undefined) {
          if (this.reserved.length < RESERVE / 2) void this.reserve().catch(() => {});
          return new RemoteWriter(this, id);
        }
        await this.reserve();
      }
    } finally {
      this.waiting--;
    }
    throw new SpoolError("the spool gave no entry to write");
  }

  /** The next entry opened ahead that is still fresh; stale ones are given back. */
  private takeFresh(): QueueId | undefined {
    const now = Date.now();
    while (this.reserved.length > 0) {
      const r = this.reserved.shift()!;
      if (now - r.at <= RESERVED_FRESH_MS) return r.id;
      void this.send({ t: "abort", id: r.id }).catch(() => {});
    }
    return undefined;
  }

  list(): Promise<QueueId[]> {
    return Promise.reject(notHere("list"));
  }

  scan(): AsyncIterable<QueueId[]> {
    throw notHere("scan");
  }

  readEnvelope(): Promise<Envelope> {
    return Promise.reject(notHere("readEnvelope"));
  }

  readBody(): Readable {
    throw notHere("readBody");
  }

  remove(): Promise<void> {
    return Promise.reject(notHere("remove"));
  }

  async close(): Promise<void> {
    for (const r of this.reserved.splice(0)) await this.send({ t: "abort", id: r.id }).catch(() => {});
  }

  /** @internal for RemoteWriter */
  async commit(id: QueueId, envelope: Envelope, chunks: readonly Buffer[]): Promise<void> {
    await this.request((req) => ({ t: "commit", req, id, envelope, chunks }));
  }

  /** @internal for RemoteWriter */
  send(message: SpoolRequest): Promise<void> {
    if (this.closed) return Promise.reject(gone());
    return this.channel.send(message).catch((err: unknown) => {
      throw new SpoolError(`cannot reach the spool: ${(err as Error).message}`, { cause: err, code: "EPIPE" });
    });
  }

  /** Open a few entries ahead; one request at a time. */
  private reserve(): Promise<void> {
    this.reserving ??= this.request((req) => ({ t: "reserve", req, count: Math.max(RESERVE, this.waiting + RESERVE / 2) })).then((r) => {
      if (r.t !== "reserved") throw new SpoolError(`unexpected answer to reserve: ${r.t}`);
      const at = Date.now();
      for (const id of r.ids) this.reserved.push({ id, at });
    }).finally(() => {
      this.reserving = null;
    });
    return this.reserving;
  }

  private async request(message: (req: number) => SpoolRequest): Promise<SpoolReply> {
    if (this.closed) throw gone();
    const req = this.nextReq++;
    const reply = new Promise<SpoolReply>((resolve, reject) => this.pending.set(req, { resolve, reject }));
    try {
      await this.send(message(req));
    } catch (err) {
      this.pending.delete(req);
      throw err;
    }
    const r = await reply;
    if (r.t === "failed") throw new SpoolError(r.message, { code: r.code });
    return r;
  }
}

class RemoteWriter implements SpoolWriter {
  readonly id: QueueId;
  private readonly spool: RemoteSpool;
  /** Body bytes not yet sent (a writer may keep a chunk: callers never change one they wrote). */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private ended = false;

  constructor(spool: RemoteSpool, id: QueueId) {
    this.spool = spool;
    this.id = id;
  }

  async write(chunk: Buffer): Promise<void> {
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes < INLINE_BODY) return;
    const chunks = this.held;
    this.held = [];
    this.heldBytes = 0;
    await this.spool.send({ t: "write", id: this.id, chunks });
  }

  async commit(envelope: Envelope): Promise<void> {
    this.ended = true;
    const chunks = this.held;
    this.held = [];
    await this.spool.commit(this.id, envelope, chunks);
  }

  async abort(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.held = [];
    await this.spool.send({ t: "abort", id: this.id }).catch(() => {});
  }
}

function gone(): SpoolError {
  return new SpoolError("the spool's process is gone", { code: "EPIPE" });
}

function notHere(what: string): Error {
  return new Error(`Spool.${what} is not available here: only the process that owns the spool reads it`);
}
