/**
 * Makes the backlog for `npm run bench:backlog` (bench/backlog.ts), quickly, without SMTP:
 *
 *   node bench/backlog-generate.ts DATADIR COUNT DOMAIN
 *
 * COUNT small messages (about 1 KiB each, one recipient at DOMAIN) written
 * with Petrel's own writers — JournalSpool.create/write/commit, 1000 commits
 * at a time — and for each the queue state a server that tried it once and
 * was refused would have stored (SqliteQueueStore.save: deferred, one
 * attempt, next attempt in an hour, as after a destination has been down a
 * while). Nothing is fsync'd (it is a benchmark's input, made before the
 * server starts). Each message carries `X-Backlog-Seq: N`. Prints one JSON
 * line when done.
 */
import { join } from "node:path";
import { JournalSpool } from "../src/spool/journal-spool.ts";
import { SqliteQueueStore } from "../src/queue/sqlite-queue-store.ts";
import type { Envelope } from "../src/mail/envelope.ts";
import type { MessageState } from "../src/queue/queue-state.ts";

const [dataDir, countText, domain] = process.argv.slice(2);
const count = Number(countText);
if (!dataDir || !Number.isInteger(count) || count < 1 || !domain) {
  process.stderr.write("usage: backlog-generate.ts DATADIR COUNT DOMAIN\n");
  process.exit(64);
}

const BATCH = 1000;
const started = Date.now();
const spool = new JournalSpool(join(dataDir, "spool"), { fsync: false });
await spool.open();
const store = new SqliteQueueStore(join(dataDir, "queue-state"), { fsync: false });
await store.open();
const filler = "The quick brown fox jumps over the lazy dog. ".repeat(14) + "\r\n";

for (let first = 0; first < count; first += BATCH) {
  const n = Math.min(BATCH, count - first);
  const now = Date.now();
  const writers = await Promise.all(Array.from({ length: n }, () => spool.create()));
  const envelopes: Envelope[] = [];
  await Promise.all(writers.map(async (w, k) => {
    const seq = first + k;
    const rcpt = `u${seq % 1000}@${domain}`;
    const body = Buffer.from(
      `Received: from gen.bench.test (gen.bench.test [127.0.0.1])\r\n\tby petrel.bench.test with ESMTP id ${w.id}; ${new Date(now).toUTCString()}\r\n` +
      `From: <s@bench.test>\r\nTo: <${rcpt}>\r\nSubject: backlog ${seq}\r\nMessage-ID: <${w.id}@petrel.bench.test>\r\nX-Backlog-Seq: ${seq}\r\n\r\n${filler}`,
    );
    const envelope: Envelope = {
      mailFrom: "s@bench.test", recipients: [{ address: rcpt }], smtputf8: false, requireTls: false, size: body.length,
      client: { address: "127.0.0.1", port: 1, helo: "gen.bench.test", protocol: "ESMTP", role: "mx" }, receivedAt: now,
    };
    envelopes[k] = envelope;
    await w.write(body);
    await w.commit(envelope);
  }));
  await Promise.all(writers.map((w, k) => {
    const e = envelopes[k];
    const state: MessageState = {
      id: w.id, arrival: now, held: false,
      recipients: [{
        address: e.recipients[0].address, original: e.recipients[0].address, kind: "forward", status: "deferred", attempts: 1, nextAttempt: now + 3_600_000,
        lastError: { enhanced: "4.4.1", diagnostic: `connect to ${domain}: ECONNREFUSED`, at: now },
        history: [{ at: now, status: "deferred", enhanced: "4.4.1", diagnostic: `connect to ${domain}: ECONNREFUSED` }],
      }],
    };
    return store.save({ state, sender: e.mailFrom, size: e.size }, { claimed: false });
  }));
}
await store.close();
await spool.close();
process.stdout.write(JSON.stringify({ done: true, messages: count, ms: Date.now() - started }) + "\n");
