/**
 * A spool in another process (an SMTP worker's view of the main process's
 * spool, src/workers/): a `Spool` whose writers send each step of a new
 * message over a channel to a `SpoolHost` (spool-host.ts) there. Only new
 * messages are written this way (create, write, commit, abort); reading and
 * removing belong to the process that owns the spool, so those methods
 * refuse. `commit()` resolves only when the owner's spool has made the
 * message durable and handed it on — the promise `Spool` makes, kept across
 * the process boundary.
 */
import type { Readable } from "node:stream";
import type { Envelope } from "../mail/envelope.ts";
import { SpoolError, type QueueId, type Spool, type SpoolWriter } from "./spool.ts";

/** A step of a new message, to the spool's owner. */
export type SpoolRequest =
  | { readonly t: "create"; readonly req: number }
  | { readonly t: "write"; readonly id: QueueId; readonly chunk: Buffer }
  | { readonly t: "commit"; readonly req: number; readonly id: QueueId; readonly envelope: Envelope }
  | { readonly t: "abort"; readonly id: QueueId };

/** The owner's answer to a request that waits for one. */
export type SpoolReply =
  | { readonly t: "created"; readonly req: number; readonly id: QueueId }
  | { readonly t: "committed"; readonly req: number }
  | { readonly t: "failed"; readonly req: number; readonly message: string; readonly code?: string };

/** The way to the spool's owner: `send` resolves once the request is handed to the pipe. */
export interface SpoolChannel {
  send(request: SpoolRequest): Promise<void>;
}

type Reply = SpoolReply;

export class RemoteSpool implements Spool {
  private readonly channel: SpoolChannel;
  private nextReq = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closed = false;

  constructor(channel: SpoolChannel) {
    this.channel = channel;
  }

  /** The owner's answer to one of this spool's requests. */
  answer(reply: Reply): void {
    const p = this.pending.get(reply.req);
    if (!p) return;
    this.pending.delete(reply.req);
    p.resolve(reply);
  }

  /** The owner is gone: nothing in flight can be committed any more. */
  disconnect(): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new SpoolError("the spool's process is gone", { code: "EPIPE" }));
    this.pending.clear();
  }

  private async request(message: (req: number) => SpoolRequest): Promise<Reply> {
    if (this.closed) throw new SpoolError("the spool's process is gone", { code: "EPIPE" });
    const req = this.nextReq++;
    const reply = new Promise<Reply>((resolve, reject) => this.pending.set(req, { resolve, reject }));
    try {
      await this.channel.send(message(req));
    } catch (err) {
      this.pending.delete(req);
      throw new SpoolError(`cannot reach the spool: ${(err as Error).message}`, { cause: err, code: "EPIPE" });
    }
    const r = await reply;
    if (r.t === "failed") throw new SpoolError(r.message, { code: r.code });
    return r;
  }

  async open(): Promise<void> {}

  async create(): Promise<SpoolWriter> {
    const r = await this.request((req) => ({ t: "create", req }));
    if (r.t !== "created") throw new SpoolError(`unexpected answer to create: ${r.t}`);
    return new RemoteWriter(this, r.id);
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

  async close(): Promise<void> {}

  /** @internal for RemoteWriter */
  async commit(id: QueueId, envelope: Envelope): Promise<void> {
    await this.request((req) => ({ t: "commit", req, id, envelope }));
  }

  /** @internal for RemoteWriter */
  sendOnly(message: SpoolRequest): Promise<void> {
    if (this.closed) return Promise.reject(new SpoolError("the spool's process is gone", { code: "EPIPE" }));
    return this.channel.send(message).catch((err: unknown) => {
      throw new SpoolError(`cannot reach the spool: ${(err as Error).message}`, { cause: err, code: "EPIPE" });
    });
  }
}

class RemoteWriter implements SpoolWriter {
  readonly id: QueueId;
  private readonly spool: RemoteSpool;
  private ended = false;

  constructor(spool: RemoteSpool, id: QueueId) {
    this.spool = spool;
    this.id = id;
  }

  write(chunk: Buffer): Promise<void> {
    return this.spool.sendOnly({ t: "write", id: this.id, chunk });
  }

  async commit(envelope: Envelope): Promise<void> {
    this.ended = true;
    await this.spool.commit(this.id, envelope);
  }

  async abort(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.spool.sendOnly({ t: "abort", id: this.id }).catch(() => {});
  }
}

function notHere(what: string): Error {
  return new Error(`Spool.${what} is not available here: only the process that owns the spool reads it`);
}
