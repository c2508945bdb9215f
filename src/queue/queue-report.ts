import { domainOf } from "../mail/address.ts";
import type { QueueId } from "../spool/spool.ts";

/**
 * What `petrel queue list|summary` show, as pure functions of the queue's
 * contents: a listing like Postfix's `mailq`, and a table of waiting
 * recipients by destination domain and age like `qshape`.
 */

/** One message as the queue tools show it. */
export interface QueueListItem {
  readonly id: QueueId;
  readonly arrival: number;
  readonly size: number | undefined;
  readonly sender: string;
  readonly held: boolean;
  /** Why a check put it on hold when it arrived (quarantine), while it stays held. */
  readonly heldReason?: string;
  /** In a cluster: the node whose memory holds it now (its lease); absent while it waits in the store. */
  readonly node?: string;
  readonly recipients: readonly {
    readonly address: string;
    readonly original: string;
    readonly status: string;
    readonly attempts: number;
    readonly nextAttempt: number;
    readonly lastError?: string;
  }[];
}

/** One page of `petrel queue list`, oldest first; `next` continues it (null: that was the last). */
export interface QueuePage {
  readonly items: readonly QueueListItem[];
  readonly next: QueueId | null;
}

/** What is in the queue, counted (`petrel status`, the foot of `petrel queue list`). */
export interface QueueTotals {
  readonly messages: number;
  readonly held: number;
  /** Messages the queue manager holds in memory now, and how many it may (queue.activeLimit). */
  readonly active: number;
  readonly activeLimit: number;
  /** The most messages held in memory at once since the server started (never above activeLimit but for a person's operations on single messages). */
  readonly activePeak: number;
  /** Recipients not yet delivered or bounced, by state. */
  readonly waiting: { readonly queued: number; readonly delivering: number; readonly deferred: number };
  readonly oldestArrival: number | null;
}

/** qshape's age buckets, in minutes: each column counts recipients at most that old. */
export const AGE_BUCKETS = [5, 10, 20, 40, 80, 160, 320, 640, 1280] as const;

export interface SummaryRow {
  readonly domain: string;
  readonly total: number;
  /** Counts per AGE_BUCKETS column, plus one for older than the last. */
  readonly buckets: number[];
}

/**
 * One age column, in minutes: the recipients of messages older than
 * `minMinutes` (the first column includes 0) and at most `maxMinutes` old;
 * `maxMinutes` null is the open-ended last column.
 */
export interface AgeBucket {
  readonly minMinutes: number;
  readonly maxMinutes: number | null;
}

/** The columns of SummaryRow.buckets, with their bounds. */
export const AGE_BUCKET_BOUNDS: readonly AgeBucket[] = [
  ...AGE_BUCKETS.map((max, i) => ({ minMinutes: i === 0 ? 0 : AGE_BUCKETS[i - 1], maxMinutes: max })),
  { minMinutes: AGE_BUCKETS[AGE_BUCKETS.length - 1], maxMinutes: null },
];

/** `petrel queue summary --json`: the rows, and what each bucket column means (scripts need the bounds). */
export function summaryReport(items: readonly QueueListItem[], now: number): { readonly ageBuckets: readonly AgeBucket[]; readonly rows: SummaryRow[] } {
  return { ageBuckets: AGE_BUCKET_BOUNDS, rows: summarize(items, now) };
}

/** The upper bound of each age column but the last, in milliseconds. */
export const AGE_BOUNDS_MS: readonly number[] = AGE_BUCKETS.map((m) => m * 60_000);

/** The age column of a message that arrived at `arrival`. */
export function ageBucket(arrival: number, now: number): number {
  const col = AGE_BOUNDS_MS.findIndex((b) => now - arrival <= b);
  return col === -1 ? AGE_BUCKETS.length : col;
}

/** Waiting recipients counted into summary rows, from wherever they are counted (memory, a store's aggregates). */
export class SummaryTable {
  private readonly rows = new Map<string, { domain: string; total: number; buckets: number[] }>();

  add(domain: string, bucket: number, n = 1): void {
    let row = this.rows.get(domain);
    if (!row) this.rows.set(domain, (row = { domain, total: 0, buckets: new Array(AGE_BUCKETS.length + 1).fill(0) }));
    row.total += n;
    row.buckets[bucket] += n;
  }

  /** TOTAL first, then the domains with the most waiting recipients. */
  result(): SummaryRow[] {
    const total = { domain: "TOTAL", total: 0, buckets: new Array(AGE_BUCKETS.length + 1).fill(0) as number[] };
    for (const r of this.rows.values()) {
      total.total += r.total;
      r.buckets.forEach((n, i) => (total.buckets[i] += n));
    }
    return [total, ...[...this.rows.values()].sort((a, b) => b.total - a.total || a.domain.localeCompare(b.domain))];
  }
}

export function summarize(items: readonly QueueListItem[], now: number): SummaryRow[] {
  const table = new SummaryTable();
  for (const item of items) {
    const col = ageBucket(item.arrival, now);
    for (const r of item.recipients) {
      if (r.status === "delivered" || r.status === "bounced") continue;
      table.add(domainOf(r.address), col);
    }
  }
  return table.result();
}

export function formatSummary(rows: readonly SummaryRow[]): string {
  const head = ["", "T", ...AGE_BUCKETS.map(String), `${AGE_BUCKETS[AGE_BUCKETS.length - 1]}+`];
  const table = [head, ...rows.map((r) => [r.domain, String(r.total), ...r.buckets.map(String)])];
  const widths = head.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  return table.map((row) => row.map((c, i) => (i === 0 ? c.padStart(widths[0]) : c.padStart(widths[i] + 1))).join(" ")).join("\n") + "\n";
}

export function formatList(items: readonly QueueListItem[], now: number): string {
  if (items.length === 0) return "Mail queue is empty\n";
  let out = "";
  for (const item of items) {
    const age = formatAge(now - item.arrival);
    const flag = item.held ? (item.heldReason !== undefined ? ` (held: ${item.heldReason})` : " (held)") : "";
    out += `${item.id}${flag}  ${new Date(item.arrival).toISOString()}  (${age} ago)  ${item.size ?? "?"} bytes\n`;
    out += `  from <${item.sender}>\n`;
    if (item.node !== undefined) out += `  on node ${item.node}\n`;
    for (const r of item.recipients) {
      const via = r.original !== r.address ? ` (for ${r.original})` : "";
      const when = r.status === "deferred" ? `, next try ${new Date(r.nextAttempt).toISOString()}` : "";
      out += `  to   <${r.address}>${via}  ${r.status}, ${r.attempts} attempt${r.attempts === 1 ? "" : "s"}${when}\n`;
      if (r.lastError && r.status !== "delivered") out += `       last error: ${r.lastError}\n`;
    }
    out += "\n";
  }
  const waiting = items.reduce((n, i) => n + i.recipients.filter((r) => r.status !== "delivered" && r.status !== "bounced").length, 0);
  return out + `-- ${items.length} message${items.length === 1 ? "" : "s"}, ${waiting} recipient${waiting === 1 ? "" : "s"} waiting\n`;
}

export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.round(h / 24)}d`;
}
