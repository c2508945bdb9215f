/**
 * A single node with `storage.kind: postgres`, through real SMTP into a Maildir, against a
 * private PostgreSQL:
 * - the database taken away (a clean stop, or the postmaster SIGKILLed) in the middle of a burst:
 *   DATA ends with 451 4.3.0 while it is away, the same node answers 250 again once it is back
 *   (no restart), and every message that got a 250 is delivered, whole, exactly once;
 * - the node itself SIGKILLed (`petrel serve` as a child process) in the middle of a burst: what
 *   was acknowledged but not yet delivered is in the database, and the next start delivers it.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { ManualClock } from "../../src/mail/clock.ts";
import { openPostgresPool, type PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { startPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { start } from "./fixtures/mta-helpers.ts";
import {
  SmtpClient, derivedMessage, pollUntil, queuedId, readDelivered, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";

let pg: PrivatePostgres;
let db: PostgresPool;

before(async () => {
  pg = await startPostgres({ host: "127.0.61.1" });
  db = openPostgresPool({ url: pg.url, poolSize: 2, node: "test-observer" }, () => {});
});
after(async () => {
  await db?.end();
  await pg?.close();
});

interface Burst {
  /** queue id → the content sent, for every 250. */
  readonly acknowledged: Map<string, Buffer>;
  /** Every final reply to DATA other than 250, as text. */
  readonly refused: string[];
  /** Replies by session, in order: 250 or the code. */
  readonly codes: number[][];
  /** What a session's client met other than a reply (a timeout, a reset), by session; it connects again. */
  readonly errors: string[][];
  /** The burst's state in a line, for a wait that times out. */
  describe(): string;
  /** Stop sending; rethrows a session's failure unless the server was killed under it. */
  stop(serverKilled?: boolean): Promise<void>;
}

/**
 * `sessions` clients sending derived messages back to back until stop(); a refused message is not
 * sent again (a new one follows). A client the server closes (421 after too many errors), or that
 * gets no reply in time, connects again, as a real one would.
 */
function burst(port: number, sessions: number, to: string, host = "127.0.0.1", onAcknowledged: (count: number) => void = () => {}): Burst {
  const acknowledged = new Map<string, Buffer>();
  const refused: string[] = [];
  const codes: number[][] = Array.from({ length: sessions }, () => []);
  const errors: string[][] = Array.from({ length: sessions }, () => []);
  let stopping = false;
  const run = async (s: number): Promise<void> => {
    let c: SmtpClient | null = null;
    try {
      for (let i = 0; i < 3000 && !stopping; i++) {
        const content = derivedMessage(s, i);
        let r: Awaited<ReturnType<SmtpClient["send"]>>;
        try {
          if (c === null || c.isClosed) {
            c?.close();
            c = await SmtpClient.connect(port, { host });
            await c.ehlo(`burst${s}.example.org`);
          }
          r = await c.send(`sender${s}@example.org`, [to], content);
        } catch (err) {
          // A client that got no reply (a slow server under a loaded machine, a reset) tries again on a new
          // connection, as a real one would; what it sent may still be stored — unacknowledged, whole.
          errors[s].push((err as Error).message);
          c?.close();
          c = null;
          if (errors[s].length > 100) throw err;
          await new Promise((resolve) => setTimeout(resolve, 50));
          continue;
        }
        codes[s].push(r.code);
        if (r.code === 250) {
          acknowledged.set(queuedId(r), content);
          onAcknowledged(acknowledged.size);
        } else {
          refused.push(r.text);
          if (r.code === 421) c.close();
          // The client waits a moment before its next try, as a real one would.
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      await c?.quit();
    } finally {
      c?.close();
    }
  };
  const done = Promise.allSettled(Array.from({ length: sessions }, (_, s) => run(s)));
  return {
    acknowledged, refused, codes, errors,
    describe: () => `${acknowledged.size} acknowledged, ${refused.length} refused; per session: ${codes.map((c, i) => `${c.length} replies (last ${c.slice(-3).join(",") || "none"}), ${errors[i].length} errors${errors[i].length > 0 ? ` (last: ${errors[i].at(-1)})` : ""}`).join("; ")}`,
    async stop(serverKilled = false) {
      stopping = true;
      const failed = (await done).find((r) => r.status === "rejected");
      if (failed !== undefined && !serverKilled) throw failed.reason;
    },
  };
}

async function spoolRows(ids: Iterable<string>): Promise<string[]> {
  return (await db.query<{ id: string }>("SELECT id FROM spool_message WHERE id = ANY($1::text[])", [[...ids]])).rows.map((r) => r.id);
}

for (const away of ["stop", "kill"] as const) {
  test(`the database ${away === "stop" ? "stopped" : "SIGKILLed"} mid-burst: 451 4.3.0 while away, 250 again once back without a restart, every 250 delivered once`, { timeout: 90_000 }, async () => {
    const clock = new ManualClock(Date.now());
    const storage = { kind: "postgres", url: pg.url, poolSize: 8, node: `single-${away}` };
    const node = await start({ storage }, undefined, pino({ level: "silent" }), { clock, controlSocket: false });
    let b: Burst | null = null;
    try {
      b = burst(node.mx, 3, "alice@example.test");
      const current = b;
      await pollUntil(() => (current.acknowledged.size >= 20 ? true : undefined), 30_000);
      await (away === "stop" ? pg.stop() : pg.kill());
      const refusedAt = current.refused.length;
      // Every session is refused at least once while the database is away.
      await pollUntil(() => (current.codes.every((c) => c.includes(451)) && current.refused.length >= refusedAt + 3 ? true : undefined), 30_000)
        .catch((err: Error) => Promise.reject(new Error(`${err.message}: while the database was away: ${current.describe()}`)));
      await pg.start();
      const ackedWhileBack = current.acknowledged.size;
      await pollUntil(() => (current.acknowledged.size >= ackedWhileBack + 20 ? true : undefined), 30_000)
        .catch((err: Error) => Promise.reject(new Error(`${err.message}: after the database came back: ${current.describe()}`)));
      await b.stop();
      b = null;

      // 421: the session's error limit, after several 451s in a row; the client connects again.
      for (const text of current.refused) assert.match(text, /^(451 4\.3\.0 |421 4\.7\.0 )/, "a message not stored is refused for now, never rejected");
      assert.ok(current.refused.some((text) => /^451 4\.3\.0 Error: queue file write error, try again later/.test(text)));
      for (const [s, codes] of current.codes.entries()) {
        const last451 = codes.lastIndexOf(451);
        assert.ok(last451 >= 0 && codes.slice(last451 + 1).includes(250), `session ${s} was accepted again after its 451s`);
        assert.ok(codes.every((c) => c === 250 || c === 451 || c === 421), `session ${s}: only 250, 451 or 421 (${[...new Set(codes)]})`);
      }
      // Deliveries that met the database away were deferred: move time on until every one is done.
      const delivered = await pollUntil(async () => {
        clock.advance(30 * 60_000);
        const found = await readDelivered(node.dir);
        const ids = new Set(found.map((d) => d.id));
        return [...current.acknowledged.keys()].every((id) => ids.has(id)) ? found : undefined;
      }, 45_000, 100);
      const copies = new Map<string, number>();
      for (const d of delivered) {
        copies.set(d.id, (copies.get(d.id) ?? 0) + 1);
        const sent = current.acknowledged.get(d.id);
        // A commit whose COMMIT reply was lost with the connection may be stored although the client got a 451: whole if so.
        if (sent !== undefined) assert.ok(d.content.equals(sent), `${d.id} delivered byte-identical`);
        else assert.match(d.content.toString("latin1"), /^From: <sender\d@example\.test>\r\n/, `an unacknowledged delivery ${d.id} is one of ours, whole`);
      }
      const twice = [...copies].filter(([, n]) => n > 1).map(([id]) => id);
      assert.deepEqual(twice, [], "no message delivered twice");
      assert.ok(current.acknowledged.size >= 40);
    } finally {
      await pg.start().catch(() => {}); // back for the next test, if this one failed while it was away
      await b?.stop().catch(() => {});
      SmtpClient.closeAll();
      await node.stop();
      await rm(node.dir, { recursive: true, force: true });
    }
  });
}

test("petrel serve SIGKILLed mid-burst: what it acknowledged and had not delivered is in PostgreSQL, and the next start delivers it", { timeout: 90_000 }, async (t) => {
  const { dir, cleanup } = await tempDir("petrel-pg-crash-");
  const dataDir = join(dir, "data");
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test",
    dataDir,
    domains: ["example.test"],
    listeners: [{ address: "127.0.61.3", port: 0, role: "mx" }],
    storage: { kind: "postgres", url: pg.url, poolSize: 8, node: "crash-node" },
    // Acceptance may run ahead of delivery (no inflow pacing), so the kill finds acknowledged mail not yet delivered.
    queue: { inflowDelay: 0 },
    log: { level: "info" },
  });
  let p: PetrelProcess | null = null;
  try {
    p = await servePetrel(configPath, 1, 30_000);
    const first = p;
    // Killed the moment the 30th 250 arrives: the newest messages are still on their way to the Maildir.
    const b = burst(first.port("mx"), 4, "postmaster@example.test", "127.0.61.3", (n) => {
      if (n === 30) first.kill("SIGKILL");
    });
    const exit = await first.exited;
    p = null;
    assert.equal(exit.signal, "SIGKILL");
    await b.stop(true);
    SmtpClient.closeAll();
    const acknowledged = b.acknowledged;
    const waiting = await spoolRows(acknowledged.keys());
    const deliveredBefore = new Set((await readDelivered(dataDir)).map((d) => d.id));
    t.diagnostic(`${acknowledged.size} acknowledged; at the kill ${waiting.length} were still in the spool, ${deliveredBefore.size} delivered`);
    assert.ok(waiting.length > 0, "some acknowledged messages were not yet delivered when the node died");
    for (const id of acknowledged.keys()) assert.ok(waiting.includes(id) || deliveredBefore.has(id), `${id} is in the spool or delivered`);

    p = await servePetrel(configPath, 1, 30_000);
    const second = p;
    const delivered = await pollUntil(async () => {
      const found = await readDelivered(dataDir);
      const ids = new Set(found.map((d) => d.id));
      return [...acknowledged.keys()].every((id) => ids.has(id)) ? found : undefined;
    }, 45_000, 100).catch(async (err: Error) => {
      const ids = new Set((await readDelivered(dataDir)).map((d) => d.id));
      const missing = [...acknowledged.keys()].filter((id) => !ids.has(id));
      const rows = await db.query("SELECT id, lease_node, lease_until, due, tried, held FROM queue_message WHERE id = ANY($1::text[])", [missing]);
      const spooled = await spoolRows(missing);
      const turn = await db.query("SELECT * FROM queue_reconcile");
      throw new Error(`${err.message}: not delivered ${missing.join(" ")}; in the spool ${spooled.join(" ")}; queue rows ${JSON.stringify(rows.rows)}; reconcile ${JSON.stringify(turn.rows)}; log: ${second.stdout().split("\n").slice(-30).join("\n")} ${second.stderr().slice(-2000)}`);
    });
    for (const d of delivered) {
      const sent = acknowledged.get(d.id);
      if (sent !== undefined) assert.ok(d.content.equals(sent), `${d.id} delivered byte-identical`);
    }
    await pollUntil(async () => ((await spoolRows(acknowledged.keys())).length === 0 ? true : undefined), 30_000, 100);
    const last = p;
    const stopped = await stopPetrel(p, 15_000);
    p = null;
    assert.equal(stopped.code, 0, `SIGTERM stops petrel (got ${JSON.stringify(stopped)}); stderr: ${last.stderr().slice(-1500)}; log: ${last.stdout().split("\n").slice(-8).join("\n")}`);
  } finally {
    if (p) {
      p.kill("SIGKILL");
      await p.exited;
    }
    SmtpClient.closeAll();
    await cleanup();
  }
});
