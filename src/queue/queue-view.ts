import { domainOf } from "../mail/address.ts";
import type { QueueId } from "../spool/spool.ts";
import { AGE_BOUNDS_MS, ageBucket, SummaryTable, type QueueListItem, type QueuePage, type QueueTotals, type SummaryRow } from "./queue-report.ts";
import { isFinal, type MessageState } from "./queue-state.ts";
import type { QueueStore, StoredMessage } from "./queue-store.ts";

/**
 * What the queue tools see, put together from the two places a message can
 * be: the store (everything at rest, counted by the store's own aggregates)
 * and the queue manager's memory (the active set: messages being worked on,
 * some of which the store does not know yet). The store leaves the messages
 * the manager claimed out of its aggregates, and the manager counts those
 * from memory, so nothing is counted twice and nothing needs all of the
 * queue in memory: a page reads `limit` rows, a summary is a GROUP BY.
 */

/** A message in the queue manager's memory, as the views need it. */
export interface InMemory extends StoredMessage {
  /** The store has a row for it (claimed by the manager). */
  readonly stored: boolean;
}

/** `node`: which node holds it in memory (a cluster's queue tools show it). */
export function listItem(m: StoredMessage, node?: string): QueueListItem {
  const s = m.state;
  return {
    id: s.id,
    arrival: s.arrival,
    size: m.size,
    sender: m.sender,
    held: s.held,
    ...(s.held && s.holdReason !== undefined ? { heldReason: s.holdReason } : {}),
    ...(node !== undefined ? { node } : {}),
    recipients: s.recipients.map((r) => ({
      address: r.address,
      original: r.original,
      status: r.status,
      attempts: r.attempts,
      nextAttempt: r.nextAttempt,
      ...(r.lastError ? { lastError: `${r.lastError.enhanced} ${r.lastError.diagnostic}` } : {}),
    })),
  };
}

/**
 * Messages after `after` in queue id order (arrival order), at most `limit`: the store's page
 * merged with what only memory holds. `self`: this node's name in a cluster, shown on what its
 * memory holds (the store names the holders of the rest).
 */
export async function listPage(store: QueueStore, memory: ReadonlyMap<QueueId, InMemory>, after: QueueId | null, limit: number, self?: string): Promise<QueuePage> {
  const rows = await store.page(after, limit + 1);
  const byId = new Map<QueueId, StoredMessage>();
  const holders = new Map<QueueId, string>();
  for (const row of rows) {
    const mine = memory.get(row.state.id);
    byId.set(row.state.id, mine ?? row);
    const holder = mine !== undefined ? self : row.holder;
    if (holder !== undefined) holders.set(row.state.id, holder);
  }
  if (self !== undefined) for (const id of memory.keys()) holders.set(id, self);
  for (const m of memory.values()) if (!m.stored && (after === null || m.state.id > after)) byId.set(m.state.id, m);
  // Past the store's last row, only memory may hold more; the page ends at the store's last row when it had more.
  const storeMore = rows.length > limit;
  const last = storeMore ? rows[limit - 1].state.id : null;
  const ids = [...byId.keys()].filter((id) => last === null || id <= last).sort();
  const page = ids.slice(0, limit);
  const more = storeMore || ids.length > limit;
  return { items: page.map((id) => listItem(byId.get(id)!, holders.get(id))), next: more && page.length > 0 ? page[page.length - 1] : null };
}

function waitingIn(s: MessageState): MessageState["recipients"] {
  return s.recipients.filter((r) => !isFinal(r));
}

/** Waiting recipients by destination domain and age (qshape), from the store's aggregates and memory. */
export async function summary(store: QueueStore, memory: Iterable<InMemory>, now: number): Promise<SummaryRow[]> {
  const table = new SummaryTable();
  for (const row of await store.waiting(now, AGE_BOUNDS_MS)) table.add(row.domain, row.bucket, row.count);
  for (const m of memory) {
    const col = ageBucket(m.state.arrival, now);
    for (const r of waitingIn(m.state)) table.add(domainOf(r.address), col);
  }
  return table.result();
}

/** The counts `petrel status` shows. */
export async function totals(store: QueueStore, memory: Iterable<InMemory>, now: number, active: { readonly limit: number; readonly peak: number }): Promise<QueueTotals> {
  const counts = await store.counts();
  const waiting = { queued: 0, delivering: 0, deferred: 0 };
  for (const row of await store.waiting(now, [])) waiting[row.status] += row.count;
  let messages = counts.messages;
  let held = counts.held;
  let inMemory = 0;
  let oldest = counts.oldestArrival ?? Infinity;
  for (const m of memory) {
    inMemory++;
    messages++;
    if (m.state.held) held++;
    oldest = Math.min(oldest, m.state.arrival);
    for (const r of waitingIn(m.state)) if (r.status === "queued" || r.status === "delivering" || r.status === "deferred") waiting[r.status]++;
  }
  return { messages, held, active: inMemory, activeLimit: active.limit, activePeak: active.peak, waiting, oldestArrival: oldest === Infinity ? null : oldest };
}
