import type { QueueId, Spool } from "../spool/spool.ts";
import type { QueueStore } from "./queue-store.ts";

/**
 * At start, the spool and the store are brought back in line: a spooled
 * message the store does not know was accepted but never written to the
 * store — the queue manager writes a new message's state only when
 * something happens to it, or when it has no room for it in memory, and a
 * crash may come first — so it is queued afresh, as if it had just arrived
 * (delivery is at-least-once). It runs in the background, batch by batch, in
 * no particular order; the server accepts and delivers meanwhile. The other
 * direction, a stored state whose message is gone from the spool, is dropped
 * when the queue next reads it.
 *
 * `skip` names messages the queue manager handled since it started (new
 * mail, claims): they are known whatever the store said a moment before.
 */
export async function reconcile(
  spool: Spool, store: QueueStore, skip: (id: QueueId) => boolean, admit: (id: QueueId) => Promise<void>, stopped: () => boolean,
): Promise<number> {
  let admitted = 0;
  for await (const batch of spool.scan()) {
    if (stopped()) break;
    const known = await store.known(batch);
    for (const id of batch) {
      if (known.has(id) || skip(id)) continue;
      await admit(id);
      admitted++;
    }
  }
  return admitted;
}
