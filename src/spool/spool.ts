import type { Readable } from "node:stream";
import type { Envelope } from "../mail/envelope.ts";

/**
 * A queue id: unique, URL- and filename-safe, roughly time-ordered, and the
 * one name a message has everywhere (250 reply, logs, Received header, admin).
 */
export type QueueId = string;

/**
 * Durable storage of accepted messages. The only promise that matters:
 * when `SpoolWriter.commit()` resolves, the envelope and body are on stable
 * storage and survive a crash or power loss; before it resolves, a crash
 * leaves nothing that `open()` would later mistake for a whole message.
 */
export interface Spool {
  /** Prepare directories and recover after a crash: remove partial entries. */
  open(): Promise<void>;
  /** Start a new message. The id is assigned now, so it can go in the Received header. */
  create(): Promise<SpoolWriter>;
  /** Ids of all committed messages, oldest first (for small queues: it may read every message). */
  list(): Promise<QueueId[]>;
  /**
   * Every committed message's id, in batches, in no promised order, without
   * holding them all (a million-message backlog); a message committed or
   * removed while the scan runs may or may not be in it.
   */
  scan(batchSize?: number): AsyncIterable<QueueId[]>;
  readEnvelope(id: QueueId): Promise<Envelope>;
  /** The body exactly as committed (CRLF line ends, no dot-stuffing). */
  readBody(id: QueueId): Readable;
  /** Remove a committed message (once every recipient is final). */
  remove(id: QueueId): Promise<void>;
  /** Finish pending commits and release resources. */
  close(): Promise<void>;
}

export interface SpoolWriter {
  readonly id: QueueId;
  /**
   * Append body bytes. Resolves when the bytes are handed to the OS (not
   * necessarily durable); callers await it for back-pressure. The writer may
   * keep `chunk` itself until commit: a caller never changes a chunk it has
   * written.
   */
  write(chunk: Buffer): Promise<void>;
  /** Make body + envelope durable, then resolve. Rejects with SpoolError on I/O failure. */
  commit(envelope: Envelope): Promise<void>;
  /** Discard everything written; safe to call at any time, more than once. */
  abort(): Promise<void>;
}

/** A storage failure: the message was not stored (disk full, I/O error). */
export class SpoolError extends Error {
  readonly code: string | undefined;
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(message, { cause: options?.cause });
    this.name = "SpoolError";
    this.code = options?.code;
  }
}

/** Any error from storage as a SpoolError saying what was being done. */
export function toSpoolError(what: string, err: unknown): SpoolError {
  if (err instanceof SpoolError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return new SpoolError(`${what}: ${message}`, { cause: err, code: typeof code === "string" ? code : undefined });
}
