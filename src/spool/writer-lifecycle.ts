/**
 * The lifecycle both spool formats' writers share: open → committing →
 * committed, or aborted, or failed. Body writes queue on one promise chain
 * that never rejects (a failure is remembered and reported by the next call);
 * commit() waits for the chain, then persists; abort() waits for it, then
 * cleans up; a commit cannot be taken back halfway. What differs per format
 * — where the bytes go and how they become durable — is in the subclass.
 */
import { crc32 } from "node:zlib";
import type { Envelope } from "../mail/envelope.ts";
import { SpoolError, toSpoolError, type QueueId, type SpoolWriter } from "./spool.ts";

export abstract class WriterLifecycle implements SpoolWriter {
  readonly id: QueueId;
  protected state: "open" | "committing" | "committed" | "aborted" | "failed" = "open";
  protected error: SpoolError | null = null;
  /** Body bytes accepted so far, and their CRC-32. */
  protected bodyLength = 0;
  protected bodyCrc = 0;
  /** The chain of file operations; never rejects (failures land in `error`). */
  protected tail: Promise<void> = Promise.resolve();
  private commitPromise: Promise<void> | null = null;
  private abortPromise: Promise<void> | null = null;
  private cleanupPromise: Promise<void> | null = null;

  constructor(id: QueueId) {
    this.id = id;
  }

  /** Take a (non-empty) chunk: keep it (through `kept`) or queue its write on `tail`. */
  protected abstract take(chunk: Buffer): void;
  /** Write what is left and the envelope, and make it all durable; throws on failure. */
  protected abstract persist(envelope: Envelope): Promise<void>;
  /** Release files and memory; remove partial files unless committed; tell the spool. Called once. */
  protected abstract cleanup(committed: boolean): Promise<void>;
  /** The spool waits for commits in flight when it closes. */
  protected abstract trackCommit(p: Promise<void>): void;

  /** The writer may keep `chunk` (see SpoolWriter.write). */
  write(chunk: Buffer): Promise<void> {
    if (this.state !== "open") return Promise.reject(this.unusable());
    if (chunk.length > 0) {
      this.bodyCrc = crc32(chunk, this.bodyCrc);
      this.bodyLength += chunk.length;
      this.take(chunk);
    }
    return this.tail.then(() => this.check());
  }

  commit(envelope: Envelope): Promise<void> {
    if (this.state !== "open") return Promise.reject(this.unusable());
    this.state = "committing";
    this.commitPromise = this.runCommit(envelope);
    this.trackCommit(this.commitPromise);
    return this.commitPromise;
  }

  /**
   * Discard the message. Idempotent. Once commit() has been called, abort()
   * only waits for it to settle: a commit cannot be taken back halfway.
   */
  abort(): Promise<void> {
    if (this.commitPromise !== null) return this.commitPromise.then(() => {}, () => {});
    if (this.abortPromise !== null) return this.abortPromise;
    if (this.state === "failed") return this.cleanupPromise ?? Promise.resolve();
    this.state = "aborted";
    this.abortPromise = this.tail.then(() => this.cleanupOnce(false));
    return this.abortPromise;
  }

  /** Writes after an abort or a failure are skipped. */
  protected get stopped(): boolean {
    return this.error !== null || this.state === "aborted";
  }

  /** Run one queued file operation; a failure is recorded and cleans up. */
  protected async attempt(what: string, op: () => Promise<void>): Promise<void> {
    try {
      await op();
    } catch (err) {
      await this.fail(toSpoolError(`${what} ${this.id}`, err));
    }
  }

  /** Record the failure and clean up (once). */
  protected fail(error: SpoolError): Promise<void> {
    if (this.error === null) this.error = error;
    this.state = "failed";
    return this.cleanupOnce(false);
  }

  private async runCommit(envelope: Envelope): Promise<void> {
    await this.tail;
    this.check();
    try {
      await this.persist(envelope);
    } catch (err) {
      await this.fail(toSpoolError(`cannot commit ${this.id}`, err));
      throw this.error;
    }
    this.state = "committed";
    await this.cleanupOnce(true);
  }

  private cleanupOnce(committed: boolean): Promise<void> {
    this.cleanupPromise ??= this.cleanup(committed);
    return this.cleanupPromise;
  }

  private check(): void {
    if (this.error !== null) throw this.error;
  }

  private unusable(): SpoolError {
    return this.error ?? new SpoolError(`message ${this.id} is ${this.state}`, { code: "ECLOSED" });
  }
}


/** Keep `p` in `commits` until it settles: a spool's close() waits for the commits in flight. */
export function trackUntilSettled(commits: Set<Promise<void>>, p: Promise<void>): void {
  commits.add(p);
  const forget = (): void => {
    commits.delete(p);
  };
  p.then(forget, forget);
}

/** Bytes that writers together may hold in memory before they must write them out. */
export class ByteBudget {
  private held = 0;
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Take `n` bytes; false when that would pass the limit (nothing taken). */
  reserve(n: number): boolean {
    if (this.held + n > this.limit) return false;
    this.held += n;
    return true;
  }

  release(n: number): void {
    this.held -= n;
  }
}
