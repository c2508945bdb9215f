/**
 * The filesystem spool: Petrel's embedded default `Spool`.
 *
 * Layout under the spool directory:
 *   tmp/<id>      a message being received; never a message after a crash
 *   queue/<id>    a committed message: body, envelope JSON, footer (see spool-file.ts)
 *   corrupt/      files found in queue/ that are not whole messages, kept for a person to look at
 *
 * Why one file per message, body first and envelope last: the body streams in
 * before the envelope is final (the envelope is complete only at commit), and
 * one file means one fsync and one rename commit the message atomically. The
 * envelope is appended as a trailer followed by a fixed-size, checksummed
 * footer that gives both lengths; nothing has to be reserved or rewritten.
 *
 * Commit protocol (the promise the whole MTA rests on):
 *   1. append envelope JSON + footer to tmp/<id>   (one writev, together with any buffered body bytes)
 *   2. fsync the file                              (data and size on stable storage)
 *   3. close, rename tmp/<id> -> queue/<id>        (atomic: a reader sees all or nothing)
 *   4. fsync queue/                                (the rename itself is durable)
 *   5. resolve commit()
 * A crash before 3 leaves only tmp/<id>, which open() deletes. A crash between
 * 3 and 4 may leave queue/<id> or not; either way it is a whole message whose
 * commit never resolved (the client was not told 250, so at worst it is
 * delivered and also retried: a duplicate, never a loss). The footer check in
 * open() also catches a file that is not whole for any other reason.
 *
 * Step 4 is shared: many sessions commit at once, and one directory fsync
 * covers every rename done before it started (see GroupSync). File fsyncs run
 * concurrently, one per message. Per message: open, write(s), fsync, close,
 * rename — and a share of one directory fsync.
 *
 * Small writes are gathered (up to 16 KiB per message, see file-spool-writer.ts) so a small
 * message reaches the disk in a single writev at commit. Memory per message
 * stays bounded by that buffer whatever the message size.
 *
 * A backlog of a million files: open() only clears tmp/ and never reads
 * queue/, so the server listens at once. A file that is not a whole message
 * is set aside in corrupt/ when it is first read (readEnvelope, as Postfix's
 * qmgr does with a damaged queue file) or listed (list(), which checks every
 * file: for small queues and tests); scan() streams the names of queue/
 * without reading them, for the queue's start-up reconciliation.
 */
import { systemClock, type Now } from "../mail/clock.ts";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { Envelope } from "../mail/envelope.ts";
import { FileSpoolWriter, type WriterHost } from "./file-spool-writer.ts";
import { checkedBodyStream } from "./checked-body.ts";
import { GroupSync } from "./group-sync.ts";
import { isQueueId, newQueueId } from "./queue-id.ts";
import { nodeFs, readEnvelopeAt, readFooter, type SpoolFileHandle, type SpoolFs } from "./spool-file.ts";
import { SpoolError, toSpoolError, type QueueId, type Spool, type SpoolWriter } from "./spool.ts";
import { trackUntilSettled } from "./writer-lifecycle.ts";

export interface FileSpoolOptions {
  /** fsync files and the queue directory (default true). false is only for benchmarks: it gives up durability. */
  readonly fsync?: boolean;
  /** Told about things a person should know: quarantined files, removed partial messages. */
  readonly onWarning?: (message: string) => void;
  /** Filesystem operations (default node:fs/promises); tests inject failures here. */
  readonly fs?: SpoolFs;
  /** Clock for queue ids (default Date.now). */
  readonly clock?: Now;
  /** Randomness for queue ids (default crypto.randomBytes). */
  readonly random?: (size: number) => Buffer;
}

export interface FileSpoolStats {
  /** Commits that resolved. */
  readonly commits: number;
  /** File fsyncs done. */
  readonly fileSyncs: number;
  /** Directory fsyncs done (shared by commits and removes through group commit). */
  readonly dirSyncs: number;
}

/** Files checked at once by list(). */
const CHECK_PARALLELISM = 32;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

function errnoCode(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

export class FileSpool implements Spool {
  readonly dir: string;
  private readonly tmpDir: string;
  private readonly queueDir: string;
  private readonly corruptDir: string;
  private readonly fsync: boolean;
  private readonly fs: SpoolFs;
  private readonly warn: (message: string) => void;
  private readonly clock: Now;
  private readonly random: ((size: number) => Buffer) | undefined;
  private readonly groupSync: GroupSync;
  private queueDirHandle: SpoolFileHandle | null = null;
  private state: "new" | "opening" | "open" | "closed" = "new";
  private openPromise: Promise<void> | null = null;
  private readonly writers = new Set<FileSpoolWriter>();
  private readonly commits = new Set<Promise<void>>();
  private counters = { commits: 0, fileSyncs: 0 };
  private readonly host: WriterHost;

  constructor(dir: string, options: FileSpoolOptions = {}) {
    this.dir = dir;
    this.tmpDir = join(dir, "tmp");
    this.queueDir = join(dir, "queue");
    this.corruptDir = join(dir, "corrupt");
    this.fsync = options.fsync ?? true;
    this.fs = options.fs ?? nodeFs;
    this.warn = options.onWarning ?? (() => {});
    this.clock = options.clock ?? systemClock;
    this.random = options.random;
    this.groupSync = new GroupSync(async () => {
      if (this.queueDirHandle === null) throw new SpoolError("spool is not open", { code: "ECLOSED" });
      await this.queueDirHandle.sync();
    });
    this.host = this.makeHost();
  }

  get stats(): FileSpoolStats {
    return { commits: this.counters.commits, fileSyncs: this.counters.fileSyncs, dirSyncs: this.groupSync.syncs };
  }

  open(): Promise<void> {
    if (this.openPromise === null) {
      this.state = "opening";
      this.openPromise = this.doOpen().then(
        () => {
          this.state = "open";
        },
        (err: unknown) => {
          this.state = "new";
          this.openPromise = null;
          throw toSpoolError(`cannot open spool ${this.dir}`, err);
        },
      );
    }
    return this.openPromise;
  }

  private async doOpen(): Promise<void> {
    const fs = this.fs;
    for (const d of [this.dir, this.tmpDir, this.queueDir, this.corruptDir]) {
      await fs.mkdir(d, { recursive: true, mode: DIR_MODE });
    }
    // Anything in tmp/ was never acknowledged: a partial message from before a crash.
    const leftovers = await fs.readdir(this.tmpDir);
    await Promise.all(leftovers.map((name) => fs.rm(join(this.tmpDir, name), { recursive: true, force: true })));
    if (leftovers.length > 0) {
      this.warn(`spool ${this.dir}: removed ${leftovers.length} partial message(s) left from before a restart`);
    }
    if (this.fsync) {
      // Make the directories themselves durable (matters on first start).
      await this.syncDir(this.dir);
      this.queueDirHandle = await fs.open(this.queueDir, "r");
    }
  }

  /** null when queue/<name> is a whole message, undefined when it is gone (removed meanwhile), else why it is not. */
  private async checkFile(name: string): Promise<string | null | undefined> {
    if (!isQueueId(name)) return "name is not a queue id";
    let fh: SpoolFileHandle | null = null;
    try {
      fh = await this.fs.open(join(this.queueDir, name), "r");
      await readEnvelopeAt(fh, await readFooter(fh));
      return null;
    } catch (err) {
      const code = errnoCode(err);
      if (code === "ECORRUPT" || code === "EISDIR") return err instanceof Error ? err.message : String(err);
      if (code === "ENOENT") return undefined;
      throw err;
    } finally {
      await fh?.close();
    }
  }

  /** Move queue/<name> into corrupt/; false when it is gone already (another reader set it aside). */
  private async quarantine(name: string, reason: string): Promise<boolean> {
    const target = join(this.corruptDir, `${name}.${this.clock.now().toString(36)}`);
    try {
      await this.fs.rename(join(this.queueDir, name), target);
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return false;
      throw err;
    }
    this.warn(`spool ${this.dir}: queue/${name} is not a whole message (${reason}); moved to ${target}`);
    return true;
  }

  private async syncQuarantine(): Promise<void> {
    await this.syncDir(this.corruptDir);
    await this.groupSync.request();
  }

  private async syncDir(path: string): Promise<void> {
    const fh = await this.fs.open(path, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  private assertOpen(): void {
    if (this.state !== "open") {
      throw new SpoolError(this.state === "closed" ? "spool is closed" : "spool is not open", { code: "ECLOSED" });
    }
  }

  private checkId(id: QueueId): void {
    if (!isQueueId(id)) throw new SpoolError(`not a queue id: ${JSON.stringify(id)}`, { code: "EINVAL" });
  }

  private messagePath(id: QueueId): string {
    return join(this.queueDir, id);
  }

  async create(): Promise<SpoolWriter> {
    this.assertOpen();
    for (let attempt = 0; ; attempt++) {
      const id = newQueueId(this.clock.now(), this.random);
      const tmpPath = join(this.tmpDir, id);
      let fh: SpoolFileHandle;
      try {
        fh = await this.fs.open(tmpPath, "wx", FILE_MODE);
      } catch (err) {
        if (errnoCode(err) === "EEXIST" && attempt < 8) continue;
        throw toSpoolError("cannot create spool file", err);
      }
      const writer = new FileSpoolWriter(this.host, id, fh, tmpPath, this.messagePath(id));
      this.writers.add(writer);
      return writer;
    }
  }

  /** Every whole message, oldest first; the others are set aside in corrupt/ on the way (one read per file: see the top of this file). */
  async list(): Promise<QueueId[]> {
    this.assertOpen();
    let names: string[];
    try {
      names = await this.fs.readdir(this.queueDir);
    } catch (err) {
      throw toSpoolError("cannot list spool", err);
    }
    const whole: QueueId[] = [];
    let quarantined = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < names.length) {
        const name = names[next++];
        const problem = await this.checkFile(name);
        if (problem === null) whole.push(name);
        else if (problem !== undefined && await this.quarantine(name, problem)) quarantined++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(CHECK_PARALLELISM, names.length) }, worker));
    if (quarantined > 0 && this.fsync) await this.syncQuarantine();
    return whole.sort();
  }

  async *scan(batchSize = 1000): AsyncGenerator<QueueId[]> {
    this.assertOpen();
    let batch: QueueId[] = [];
    try {
      for await (const entry of await this.fs.opendir(this.queueDir)) {
        if (!isQueueId(entry.name)) continue;
        batch.push(entry.name);
        if (batch.length >= batchSize) {
          yield batch;
          batch = [];
        }
      }
    } catch (err) {
      throw toSpoolError("cannot list spool", err);
    }
    if (batch.length > 0) yield batch;
  }

  /** The envelope; a file that is not a whole message is set aside in corrupt/ and reported as ECORRUPT. */
  async readEnvelope(id: QueueId): Promise<Envelope> {
    this.checkId(id);
    let fh: SpoolFileHandle | null = null;
    try {
      fh = await this.fs.open(this.messagePath(id), "r");
      return await readEnvelopeAt(fh, await readFooter(fh));
    } catch (err) {
      if (errnoCode(err) === "ECORRUPT") {
        await fh?.close().catch(() => {});
        fh = null;
        if (await this.quarantine(id, err instanceof Error ? err.message : String(err)) && this.fsync) await this.syncQuarantine().catch(() => {});
      }
      throw toSpoolError(`cannot read envelope of ${id}`, err);
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  /**
   * The body as a byte stream. An invalid id throws at once; I/O errors, and a
   * body whose checksum does not match what was committed, arrive as an
   * 'error' event (the mismatch only after the last byte, so a consumer must
   * treat an error at any point as a failed read).
   */
  readBody(id: QueueId): Readable {
    this.checkId(id);
    const fs = this.fs;
    const path = this.messagePath(id);
    return checkedBodyStream(id, async () => {
      const handle = await fs.open(path, "r");
      try {
        const footer = await readFooter(handle);
        return { handle, body: { offset: 0, length: footer.bodyLength, crc: footer.bodyCrc } };
      } catch (err) {
        await handle.close().catch(() => {});
        throw err;
      }
    }, toSpoolError);
  }


  async remove(id: QueueId): Promise<void> {
    this.checkId(id);
    this.assertOpen();
    try {
      // No directory fsync: a removal lost in a crash only brings the message
      // back for another delivery attempt (at-least-once), never loses one.
      await this.fs.unlink(this.messagePath(id));
    } catch (err) {
      throw toSpoolError(`cannot remove ${id}`, err);
    }
  }

  async close(): Promise<void> {
    if (this.state === "closed") return;
    if (this.openPromise !== null) await this.openPromise.catch(() => {});
    this.state = "closed";
    await Promise.allSettled([...this.commits]);
    await Promise.allSettled([...this.writers].map((w) => w.abort()));
    await this.groupSync.idle();
    const handle = this.queueDirHandle;
    this.queueDirHandle = null;
    await handle?.close();
  }

  /** The narrow view of this spool its writers get. */
  private makeHost(): WriterHost {
    return {
      fsOps: this.fs,
      syncEnabled: this.fsync,
      dirSync: () => this.dirSync(),
      trackCommit: (p) => trackUntilSettled(this.commits, p),
      writerDone: (writer, committed) => {
        this.writers.delete(writer);
        if (committed) this.counters.commits++;
      },
      countFileSync: () => {
        this.counters.fileSyncs++;
      },
    };
  }

  /** Make renames and unlinks in queue/ done so far durable, sharing one fsync with concurrent callers. */
  private dirSync(): Promise<void> {
    return this.fsync ? this.groupSync.request() : Promise.resolve();
  }
}
