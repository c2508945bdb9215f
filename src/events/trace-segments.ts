/**
 * The message trace on disk: `<dataDir>/trace/<YYYY-MM-DDTHH>.jsonl`, one
 * segment per UTC hour, one event per line (JSON of `PetrelEvent`), only
 * ever appended to. A segment is deleted whole once its hour is older than
 * the retention, or, oldest first, when all of them together exceed the
 * size bound. Lines are written in batches without fsync: a crash may lose
 * the last batch of trace, never mail (the spool and the queue state are
 * what keep mail).
 */
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, stat, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { PetrelEvent } from "./petrel-event.ts";

const HOUR = 3_600_000;
const NAME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})\.jsonl$/;

/** The segment an event at `at` goes into. */
export function segmentName(at: number): string {
  return `${new Date(Math.floor(at / HOUR) * HOUR).toISOString().slice(0, 13)}.jsonl`;
}

/** The start of a segment's hour (ms), or undefined for a file that is no segment. */
export function segmentHour(name: string): number | undefined {
  const m = NAME.exec(name);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4])) : undefined;
}

export interface Segment {
  readonly name: string;
  readonly hour: number;
  size: number;
}

export class TraceSegments {
  readonly dir: string;
  private readonly maxBytes: number;
  private readonly retention: number;
  /** Oldest first. */
  private segments: Segment[] = [];
  private current: { segment: Segment; file: FileHandle } | null = null;

  constructor(options: { dir: string; retention: number; maxBytes: number }) {
    this.dir = options.dir;
    this.retention = options.retention;
    this.maxBytes = options.maxBytes;
  }

  async open(now: number): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const found: Segment[] = [];
    for (const name of await readdir(this.dir)) {
      const hour = segmentHour(name);
      if (hour === undefined) continue;
      const st = await stat(join(this.dir, name)).catch(() => null);
      if (st?.isFile()) found.push({ name, hour, size: st.size });
    }
    this.segments = found.sort((a, b) => a.hour - b.hour);
    await this.prune(now);
  }

  /** Segments oldest first (a copy). */
  list(): readonly Segment[] {
    return [...this.segments];
  }

  totalBytes(): number {
    return this.segments.reduce((n, s) => n + s.size, 0);
  }

  /** Append lines to the segment of `at` (a new hour starts a new segment and prunes old ones). */
  async append(at: number, text: string): Promise<void> {
    const name = segmentName(at);
    if (this.current?.segment.name !== name) {
      await this.current?.file.close();
      this.current = null;
      let segment = this.segments.find((s) => s.name === name);
      if (!segment) {
        segment = { name, hour: segmentHour(name)!, size: 0 };
        this.segments.push(segment);
        this.segments.sort((a, b) => a.hour - b.hour);
      }
      this.current = { segment, file: await open(join(this.dir, name), "a", 0o600) };
      await this.prune(at);
    }
    const bytes = Buffer.from(text, "utf8");
    await this.current.file.write(bytes);
    this.current.segment.size += bytes.length;
    if (this.totalBytes() > this.maxBytes) await this.prune(at);
  }

  /** Delete segments past the retention, then the oldest while over the size bound (never the one being written). */
  async prune(now: number): Promise<void> {
    const keep: Segment[] = [];
    let total = this.totalBytes();
    for (const s of this.segments) {
      const writing = this.current?.segment === s;
      const old = s.hour + HOUR <= now - this.retention;
      if (!writing && (old || total > this.maxBytes)) {
        await unlink(join(this.dir, s.name)).catch(() => {});
        total -= s.size;
        continue;
      }
      keep.push(s);
    }
    this.segments = keep;
  }

  /**
   * Every event in the segments from the hour of `since` on, that passes
   * `match` (given the raw line first, so most lines are never parsed).
   */
  async scan(since: number, quick: (line: string) => boolean, match: (e: PetrelEvent) => boolean = () => true): Promise<PetrelEvent[]> {
    const from = Math.floor(since / HOUR) * HOUR;
    const out: PetrelEvent[] = [];
    for (const s of this.segments) {
      if (s.hour < from) continue;
      for await (const line of lines(join(this.dir, s.name))) {
        if (!quick(line)) continue;
        const e = parse(line);
        if (e && match(e)) out.push(e);
      }
    }
    return out;
  }

  /** The events of the newest segments, about `maxBytes` of them (start-up: the activity feed and the recent traces). */
  async tail(maxBytes: number): Promise<PetrelEvent[]> {
    const picked: Segment[] = [];
    let bytes = 0;
    for (let i = this.segments.length - 1; i >= 0 && bytes < maxBytes; i--) {
      picked.unshift(this.segments[i]);
      bytes += this.segments[i].size;
    }
    const out: PetrelEvent[] = [];
    for (const s of picked) {
      for await (const line of lines(join(this.dir, s.name))) {
        const e = parse(line);
        if (e) out.push(e);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.current?.file.close();
    this.current = null;
  }
}

async function* lines(path: string): AsyncGenerator<string> {
  const stream = createReadStream(path, { encoding: "utf8" });
  stream.on("error", () => {});
  try {
    for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) yield line;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  } finally {
    stream.destroy();
  }
}

/** A line cut short by a crash is skipped. */
function parse(line: string): PetrelEvent | null {
  if (line === "") return null;
  try {
    const e = JSON.parse(line) as PetrelEvent;
    return typeof e === "object" && e !== null && typeof e.seq === "number" && typeof e.type === "string" ? e : null;
  } catch {
    return null;
  }
}
