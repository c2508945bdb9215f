import { readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { isQueueId } from "../spool/queue-id.ts";
import type { Spool } from "../spool/spool.ts";
import type { MessageState } from "./queue-state.ts";
import type { QueueStore } from "./queue-store.ts";

/**
 * Queue state as Petrel wrote it before the queue store: one JSON file per
 * message, `<dataDir>/queue-state/<id>.json`. Found at start, each is moved
 * into the store — attempts, deferrals, holds and sent delay warnings carry
 * over — and deleted; a file whose message is no longer spooled is only
 * deleted. Nothing else reads these files.
 */
export async function importLegacyStates(dir: string, spool: Spool, store: QueueStore, warn: (message: string) => void): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let imported = 0;
  // Saved in chunks, each durable with one sync, before its files go.
  let saves: Promise<void>[] = [];
  let done: string[] = [];
  const settle = async (): Promise<void> => {
    await Promise.all(saves);
    for (const path of done) await unlink(path).catch(() => {});
    saves = [];
    done = [];
  };
  for (const name of names) {
    const path = join(dir, name);
    if (name.endsWith(".tmp")) {
      await unlink(path).catch(() => {});
      continue;
    }
    const id = name.endsWith(".json") ? name.slice(0, -5) : "";
    if (!isQueueId(id)) continue;
    let state: MessageState | null = null;
    try {
      state = JSON.parse(await readFile(path, "utf8")) as MessageState;
      if (state.id !== id || !Array.isArray(state.recipients)) state = null;
    } catch {
      state = null;
    }
    if (state !== null) {
      const envelope = await spool.readEnvelope(id).catch(() => null);
      if (envelope !== null) {
        for (const r of state.recipients) if (r.status === "delivering") r.status = "queued";
        saves.push(store.save({ state, sender: envelope.mailFrom, size: envelope.size ?? envelope.declaredSize }, { claimed: false, durable: true }));
        imported++;
      }
    } else {
      warn(`queue state ${path} is unreadable; its message is queued afresh`);
    }
    done.push(path);
    if (done.length >= 500) await settle();
  }
  await settle();
  return imported;
}
