/**
 * The spool as an SMTP worker sees it: the `Spool` of the primary, reached
 * over the IPC channel. A worker only ever writes new messages (create,
 * write, commit, abort); reading and removing belong to the queue manager in
 * the primary, so those methods refuse. `commit()` resolves only when the
 * primary's spool has made the message durable and its queue manager has it
 * — the promise `Spool` makes, kept across the process boundary.
 */
import type { Readable } from "node:stream";
import type { Envelope } from "../mail/envelope.ts";
import { SpoolError, type QueueId, type Spool, type SpoolWriter } from "../spool/spool.ts";
import type { FromWorker, ToWorker } from "./messages.ts";

/** The worker's end of the channel: `send` resolves once the message is handed to the pipe. */
export interface PrimaryChannel {
  send(message: FromWorker): Promise<void>;
}

type Reply = Extract<ToWorker, { req: number }>;

export class RemoteSpool implements Spool {
  private readonly channel: PrimaryChannel;
  private nextReq = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closed = false;

  constructor(channel: PrimaryChannel) {
    this.channel = channel;
  }

  /** A reply from the primary to one of this spool's requests. */
  answer(reply: Reply): void {
    const p = this.pending.get(reply.req);
    if (!p) return;
    this.pending.delete(reply.req);
    p.resolve(reply);
  }

  /** The primary is gone: nothing in flight can be committed any more. */
  disconnect(): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new SpoolError("the spool's process is gone", { code: "EPIPE" }));
    this.pending.clear();
  }

  async request(message: (req: number) => FromWorker): Promise<Reply> {
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
  sendOnly(message: FromWorker): Promise<void> {
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
    await this.spool.request((req) => ({ t: "commit", req, id: this.id, envelope }));
  }

  async abort(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.spool.sendOnly({ t: "abort", id: this.id }).catch(() => {});
  }
}

function notHere(what: string): Error {
  return new Error(`Spool.${what} is not available in an SMTP worker: the queue manager in the primary reads the spool`);
}
