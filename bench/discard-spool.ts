/**
 * A Spool that keeps nothing: bench-only. It lets the benchmark measure
 * Petrel's protocol path (socket → session → policy → handler) without the
 * disk. Never use it outside bench/: every "250 queued" it allows is a lie.
 */
import { Readable } from "node:stream";
import type { Envelope } from "../src/mail/envelope.ts";
import { newQueueId } from "../src/spool/queue-id.ts";
import { SpoolError, type QueueId, type Spool, type SpoolWriter } from "../src/spool/spool.ts";

const done = Promise.resolve();

class DiscardWriter implements SpoolWriter {
  readonly id: QueueId;
  bytes = 0;
  private readonly onCommit: (bytes: number) => void;
  constructor(id: QueueId, onCommit: (bytes: number) => void) {
    this.id = id;
    this.onCommit = onCommit;
  }
  write(chunk: Buffer): Promise<void> {
    this.bytes += chunk.length;
    return done;
  }
  commit(_envelope: Envelope): Promise<void> {
    this.onCommit(this.bytes);
    return done;
  }
  abort(): Promise<void> {
    return done;
  }
}

export class DiscardSpool implements Spool {
  messages = 0;
  bytes = 0;
  open(): Promise<void> {
    return done;
  }
  create(): Promise<SpoolWriter> {
    return Promise.resolve(new DiscardWriter(newQueueId(), (n) => {
      this.messages++;
      this.bytes += n;
    }));
  }
  list(): Promise<QueueId[]> {
    return Promise.resolve([]);
  }
  async *scan(): AsyncGenerator<QueueId[]> {}
  readEnvelope(id: QueueId): Promise<Envelope> {
    return Promise.reject(new SpoolError(`discard spool keeps nothing (${id})`, { code: "ENOENT" }));
  }
  readBody(_id: QueueId): Readable {
    return Readable.from([]);
  }
  remove(_id: QueueId): Promise<void> {
    return done;
  }
  close(): Promise<void> {
    return done;
  }
}
