import { domainOf } from "../mail/address.ts";
import type { QueueListItem } from "./queue-manager.ts";

/**
 * What `petrel queue list|summary` show, as pure functions of the queue's
 * contents: a listing like Postfix's `mailq`, and a table of waiting
 * recipients by destination domain and age like `qshape`.
 */

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

export function summarize(items: readonly QueueListItem[], now: number): SummaryRow[] {
  const rows = new Map<string, SummaryRow>();
  const total: SummaryRow = { domain: "TOTAL", total: 0, buckets: new Array(AGE_BUCKETS.length + 1).fill(0) };
  for (const item of items) {
    const ageMin = (now - item.arrival) / 60_000;
    let col = AGE_BUCKETS.findIndex((b) => ageMin <= b);
    if (col === -1) col = AGE_BUCKETS.length;
    for (const r of item.recipients) {
      if (r.status === "delivered" || r.status === "bounced") continue;
      const domain = domainOf(r.address);
      let row = rows.get(domain);
      if (!row) rows.set(domain, (row = { domain, total: 0, buckets: new Array(AGE_BUCKETS.length + 1).fill(0) }));
      (row as { total: number }).total++;
      row.buckets[col]++;
      (total as { total: number }).total++;
      total.buckets[col]++;
    }
  }
  return [total, ...[...rows.values()].sort((a, b) => b.total - a.total || a.domain.localeCompare(b.domain))];
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
