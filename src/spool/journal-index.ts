/**
 * Where each live message of the journal spool is, held in memory — but not
 * what it is: a backlog of a million messages must not cost a million
 * envelopes of memory.
 *
 * - A message in a segment still being appended to is a `RecentEntry`:
 *   everything about it at hand, its envelope JSON included, so the queue
 *   reads a message it was just told about without touching the disk. There
 *   are at most a segment's worth of these.
 * - When a segment is retired (no record will be appended to it again) its
 *   live messages become a `SegmentTable`: queue ids as two numbers each
 *   (queue-id.ts `queueIdKey`), sorted, with the offset of each record and a
 *   flag byte — about 21 bytes a message. The envelope and where the body is
 *   are read from the record's header when asked for (journal-spool.ts).
 *
 * A lookup checks the recent entries, then each table whose id range covers
 * the id (queue ids are time-ordered and segments are filled in time order,
 * so usually one) with a binary search.
 */
import { queueIdFromKey, queueIdKey, type QueueIdKey } from "./queue-id.ts";
import type { QueueId } from "./spool.ts";

export interface RecentEntry {
  readonly kind: "recent";
  readonly id: QueueId;
  readonly segment: number;
  readonly offset: number;
  /** Offset of the body in the segment (inline) or 0 in large/<id>. */
  readonly bodyOffset: number;
  readonly bodyLength: number;
  readonly bodyCrc: number;
  readonly large: boolean;
  readonly envelopeJson: Buffer;
  /** A remove() is appending its tombstone. */
  removing: boolean;
}

export interface SettledEntry {
  readonly kind: "settled";
  readonly id: QueueId;
  readonly segment: number;
  readonly offset: number;
  readonly large: boolean;
  readonly removing: boolean;
  readonly table: SegmentTable;
  readonly slot: number;
}

export type IndexEntry = RecentEntry | SettledEntry;

const LARGE = 1;
const GONE = 2;
const REMOVING = 4;

function compare(ahi: number, alo: number, bhi: number, blo: number): number {
  return ahi !== bhi ? ahi - bhi : alo - blo;
}

/** The live messages of one retired segment. */
export class SegmentTable {
  readonly segment: number;
  private readonly hi: Float64Array;
  private readonly lo: Float64Array;
  private readonly offsets: Uint32Array | Float64Array;
  private readonly flags: Uint8Array;
  private liveCount: number;

  private constructor(segment: number, hi: Float64Array, lo: Float64Array, offsets: Uint32Array | Float64Array, flags: Uint8Array) {
    this.segment = segment;
    this.hi = hi;
    this.lo = lo;
    this.offsets = offsets;
    this.flags = flags;
    this.liveCount = flags.length;
  }

  /** A table of `entries` (any order; ids unique). */
  static build(segment: number, entries: readonly { readonly id: QueueId; readonly offset: number; readonly large: boolean }[]): SegmentTable {
    const n = entries.length;
    const hi = new Float64Array(n);
    const lo = new Float64Array(n);
    const offsets = new Float64Array(n);
    const large = new Uint8Array(n);
    entries.forEach((e, i) => {
      const key = queueIdKey(e.id);
      hi[i] = key.hi;
      lo[i] = key.lo;
      offsets[i] = e.offset;
      large[i] = e.large ? 1 : 0;
    });
    return SegmentTable.fromKeys(segment, hi, lo, offsets, large);
  }

  /** A table of messages given as parallel arrays of keys (queue-id.ts), offsets and large flags (1 or 0), in any order; keys unique. */
  static fromKeys(segment: number, hi: Float64Array, lo: Float64Array, offsets: Float64Array, large: Uint8Array): SegmentTable {
    const n = hi.length;
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((a, b) => compare(hi[a], lo[a], hi[b], lo[b]));
    let wide = false;
    for (let i = 0; i < n; i++) if (offsets[i] > 0xffffffff) wide = true;
    const sortedHi = new Float64Array(n);
    const sortedLo = new Float64Array(n);
    const sortedOffsets = wide ? new Float64Array(n) : new Uint32Array(n);
    const flags = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const k = order[i];
      sortedHi[i] = hi[k];
      sortedLo[i] = lo[k];
      sortedOffsets[i] = offsets[k];
      flags[i] = large[k] === 1 ? LARGE : 0;
    }
    return new SegmentTable(segment, sortedHi, sortedLo, sortedOffsets, flags);
  }

  get live(): number {
    return this.liveCount;
  }

  /** The slot of a live (or being removed) message, or -1. */
  find(key: QueueIdKey): number {
    const n = this.hi.length;
    if (n === 0) return -1;
    if (compare(key.hi, key.lo, this.hi[0], this.lo[0]) < 0 || compare(key.hi, key.lo, this.hi[n - 1], this.lo[n - 1]) > 0) return -1;
    let a = 0;
    let b = n - 1;
    while (a <= b) {
      const m = (a + b) >> 1;
      const c = compare(key.hi, key.lo, this.hi[m], this.lo[m]);
      if (c === 0) return (this.flags[m] & GONE) !== 0 ? -1 : m;
      if (c < 0) b = m - 1;
      else a = m + 1;
    }
    return -1;
  }

  entry(slot: number): SettledEntry {
    const f = this.flags[slot];
    return {
      kind: "settled", id: queueIdFromKey(this.hi[slot], this.lo[slot]), segment: this.segment, offset: this.offsets[slot],
      large: (f & LARGE) !== 0, removing: (f & REMOVING) !== 0, table: this, slot,
    };
  }

  setRemoving(slot: number, removing: boolean): void {
    this.flags[slot] = removing ? this.flags[slot] | REMOVING : this.flags[slot] & ~REMOVING;
  }

  /** The message is gone (its tombstone, or a seal, says so). */
  remove(slot: number): void {
    if ((this.flags[slot] & GONE) !== 0) return;
    this.flags[slot] |= GONE;
    this.liveCount--;
  }

  /** Remove every message whose record starts at or after `end` (a seal); returns how many. */
  cutFrom(end: number): number {
    let n = 0;
    for (let i = 0; i < this.flags.length; i++) {
      if ((this.flags[i] & GONE) === 0 && this.offsets[i] >= end) {
        this.remove(i);
        n++;
      }
    }
    return n;
  }

  /** Live messages whose body is a file of its own (large/<id>), in id order. */
  *largeEntries(): Generator<SettledEntry> {
    for (let i = 0; i < this.flags.length; i++) if ((this.flags[i] & (GONE | LARGE)) === LARGE) yield this.entry(i);
  }

  /** Live messages in id order (being removed included). */
  *entries(): Generator<SettledEntry> {
    for (let i = 0; i < this.flags.length; i++) if ((this.flags[i] & GONE) === 0) yield this.entry(i);
  }
}

/** Every live message of the spool: recent entries and one table per retired segment that has any. */
export class JournalIndex {
  private readonly recent = new Map<QueueId, RecentEntry>();
  private readonly tables = new Map<number, SegmentTable>();

  get size(): number {
    let n = this.recent.size;
    for (const t of this.tables.values()) n += t.live;
    return n;
  }

  addRecent(e: RecentEntry): void {
    this.recent.set(e.id, e);
  }

  addTable(t: SegmentTable): void {
    if (t.live > 0) this.tables.set(t.segment, t);
  }

  /** The entry of a live message (or one being removed); undefined when there is none. */
  get(id: QueueId): IndexEntry | undefined {
    const r = this.recent.get(id);
    if (r !== undefined) return r;
    if (this.tables.size === 0) return undefined;
    const key = queueIdKey(id);
    for (const t of this.tables.values()) {
      const slot = t.find(key);
      if (slot >= 0) return t.entry(slot);
    }
    return undefined;
  }

  /** Only the recent entries: what is known before recovery has read the older segments. */
  getRecent(id: QueueId): RecentEntry | undefined {
    return this.recent.get(id);
  }

  setRemoving(e: IndexEntry, removing: boolean): void {
    if (e.kind === "recent") e.removing = removing;
    else e.table.setRemoving(e.slot, removing);
  }

  remove(e: IndexEntry): void {
    if (e.kind === "recent") {
      this.recent.delete(e.id);
      return;
    }
    e.table.remove(e.slot);
    if (e.table.live === 0) this.tables.delete(e.table.segment);
  }

  /** A seal: messages of `segment` at or after `end` never were. Returns how many went. */
  cut(segment: number, end: number): number {
    const t = this.tables.get(segment);
    if (t === undefined) return 0;
    const n = t.cutFrom(end);
    if (t.live === 0) this.tables.delete(segment);
    return n;
  }

  /** `segment` is retired: its recent entries become a table. */
  settle(segment: number): void {
    const entries: RecentEntry[] = [];
    for (const e of this.recent.values()) if (e.segment === segment && !e.removing) entries.push(e);
    if (entries.length === 0) return;
    for (const e of entries) this.recent.delete(e.id);
    this.addTable(SegmentTable.build(segment, entries));
  }

  /** The settled messages whose body is a file of their own: a few, read without making an entry for every message. */
  *largeSettled(): Generator<SettledEntry> {
    for (const t of [...this.tables.values()]) yield* t.largeEntries();
  }

  /** Every live message (being removed ones left out), table by table, then the recent ones; in no promised order. */
  *entries(): Generator<IndexEntry> {
    for (const t of [...this.tables.values()]) for (const e of t.entries()) if (!e.removing) yield e;
    for (const e of [...this.recent.values()]) if (!e.removing) yield e;
  }
}
