import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { FileSpool } from "../../src/spool/file-spool.ts";
import type { Envelope } from "../../src/mail/envelope.ts";
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest, DsnRecipient } from "../../src/queue/ports.ts";
import { createRouter } from "../../src/delivery/router.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { QueueManager, type QueueSettings } from "../../src/queue/queue-manager.ts";
import { SqliteQueueStore } from "../../src/queue/sqlite-queue-store.ts";
import type { RecipientResolution } from "../../src/accounts/account-store.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;
const settings: QueueSettings = {
  minBackoff: 5 * MIN, maxBackoff: HOUR, lifetime: 5 * 24 * HOUR, bounceLifetime: 5 * 24 * HOUR,
  delayWarning: 4 * HOUR, concurrency: 10, perDestination: 2, recipientsPerDelivery: 50, activeLimit: 20_000,
};

/** An agent whose answer per recipient is scripted, recording what it was asked. */
class ScriptedAgent implements DeliveryAgent {
  calls: { recipients: string[]; body: string }[] = [];
  /** The outcome for a recipient, or undefined to leave it out of the answer. */
  answer: (rcpt: string, attempt: number) => DeliveryOutcome | undefined = () => ({ status: "delivered", dsn: "final" });
  private attempts = new Map<string, number>();
  gate: Promise<void> | null = null;
  async deliver(req: DeliveryRequest): Promise<DeliveryOutcomes> {
    let body = "";
    for await (const chunk of req.body()) body += chunk.toString();
    this.calls.push({ recipients: [...req.recipients], body });
    if (this.gate) await this.gate;
    const outcomes = new Map<string, DeliveryOutcome>();
    for (const r of req.recipients) {
      const n = (this.attempts.get(r) ?? 0) + 1;
      this.attempts.set(r, n);
      const o = this.answer(r, n);
      if (o) outcomes.set(r, o);
    }
    return outcomes;
  }
}

interface Fixture {
  dir: string;
  spool: FileSpool;
  clock: ManualClock;
  local: ScriptedAgent;
  remote: ScriptedAgent;
  dsns: { id: string; recipients: DsnRecipient[] }[];
  queue: QueueManager;
  submit(envelope: Partial<Envelope> & { recipients: Envelope["recipients"] }, body?: string): Promise<string>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

const resolveDefault = async (address: string): Promise<RecipientResolution> => {
  const domain = address.split("@")[1];
  if (domain !== "local.test") return { kind: "not-local" };
  if (address.startsWith("nobody@")) return { kind: "unknown", reason: "no such user here" };
  if (address.startsWith("team@")) return { kind: "local", targets: [{ type: "mailbox", address: "a@local.test" }, { type: "mailbox", address: "b@local.test" }, { type: "forward", address: "c@far.test" }] };
  return { kind: "local", targets: [{ type: "mailbox", address }] };
};

async function fixture(opts: { settings?: Partial<QueueSettings>; maxReceived?: number } = {}): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-queue-"));
  const clock = new ManualClock();
  const local = new ScriptedAgent();
  const remote = new ScriptedAgent();
  const dsns: Fixture["dsns"] = [];
  let spool = new FileSpool(join(dir, "spool"), { fsync: false });
  await spool.open();
  const make = () => new QueueManager({
    spool,
    store: new SqliteQueueStore(join(dir, "state"), { fsync: false }),
    resolve: resolveDefault,
    router: createRouter({ local, remote }),
    sendDsn: async (id, _env, _arrival, recipients) => {
      dsns.push({ id, recipients: [...recipients] });
      return null;
    },
    clock,
    random: () => 0.5,
    log: pino({ level: "silent" }),
    settings: { ...settings, ...opts.settings },
    ...(opts.maxReceived !== undefined ? { maxReceived: opts.maxReceived } : {}),
  });
  const f: Fixture = {
    dir, spool, clock, local, remote, dsns, queue: make(),
    async submit(partial, body = "Subject: t\r\n\r\nhello\r\n") {
      const w = await f.spool.create();
      await w.write(Buffer.from(body));
      await w.commit({
        mailFrom: "sender@far.test", smtputf8: false, requireTls: false, receivedAt: clock.now(),
        client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "mx" },
        ...partial,
      });
      f.queue.enqueue(w.id);
      await f.queue.idle();
      return w.id;
    },
    async restart() {
      await f.queue.stop();
      await f.spool.close();
      spool = new FileSpool(join(dir, "spool"), { fsync: false });
      await spool.open();
      f.spool = spool;
      f.queue = make();
      await f.queue.start();
      await f.queue.idle();
    },
    async close() {
      await f.queue.stop();
      await f.spool.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await f.queue.start();
  return f;
}

test("a local message is delivered once and leaves the spool", async () => {
  const f = await fixture();
  try {
    const id = await f.submit({ recipients: [{ address: "alice@local.test" }] });
    assert.deepEqual(f.local.calls.map((c) => c.recipients), [["alice@local.test"]]);
    assert.equal(f.local.calls[0].body, "Subject: t\r\n\r\nhello\r\n");
    assert.deepEqual(await f.spool.list(), []);
    assert.equal(await f.queue.get(id), null);
    assert.deepEqual(f.dsns, []);
  } finally {
    await f.close();
  }
});

test("a temporary failure is retried with backoff, without sleeping", async () => {
  const f = await fixture();
  try {
    f.local.answer = (_r, n) => (n < 3 ? { status: "deferred", enhanced: "4.2.2", diagnostic: "mailbox busy" } : { status: "delivered", dsn: "final" });
    const id = await f.submit({ recipients: [{ address: "alice@local.test" }] });
    let item = (await f.queue.get(id))!.item;
    assert.equal(item.recipients[0].status, "deferred");
    assert.equal(item.recipients[0].lastError, "4.2.2 mailbox busy");
    // First retry after minBackoff (5 min, jitter 0 with random 0.5), not before.
    f.clock.advance(5 * MIN - 1000);
    await f.queue.idle();
    assert.equal(f.local.calls.length, 1);
    f.clock.advance(1000);
    await f.queue.idle();
    assert.equal(f.local.calls.length, 2);
    item = (await f.queue.get(id))!.item;
    assert.equal(item.recipients[0].attempts, 2);
    // Second retry doubles: 10 minutes.
    f.clock.advance(10 * MIN);
    await f.queue.idle();
    assert.equal(f.local.calls.length, 3);
    assert.deepEqual(await f.spool.list(), []);
  } finally {
    await f.close();
  }
});

test("a permanent failure bounces once with the diagnostic; the others still deliver", async () => {
  const f = await fixture();
  try {
    f.local.answer = (r) => (r.startsWith("bad") ? { status: "failed", enhanced: "5.2.1", diagnostic: "550 5.2.1 mailbox disabled" } : { status: "delivered", dsn: "final" });
    await f.submit({ recipients: [{ address: "bad@local.test", orcpt: "rfc822;bad@local.test" }, { address: "good@local.test" }] });
    assert.equal(f.dsns.length, 1);
    assert.equal(f.dsns[0].recipients.length, 1);
    const r = f.dsns[0].recipients[0];
    assert.equal(r.address, "bad@local.test");
    assert.equal(r.action, "failed");
    assert.equal(r.status, "5.2.1");
    assert.equal(r.diagnostic, "550 5.2.1 mailbox disabled");
    assert.equal(r.orcpt, "rfc822;bad@local.test");
    assert.deepEqual(await f.spool.list(), []);
  } finally {
    await f.close();
  }
});

test("aliases fan out, local and remote go to their agents, unknown users bounce 5.1.1", async () => {
  const f = await fixture();
  try {
    const id = await f.submit({ recipients: [{ address: "team@local.test" }, { address: "nobody@local.test" }, { address: "a@local.test" }] });
    const delivered = f.local.calls.flatMap((c) => c.recipients).sort();
    assert.deepEqual(delivered, ["a@local.test", "b@local.test"], "a@ reached twice is delivered once");
    assert.deepEqual(f.remote.calls.flatMap((c) => c.recipients), ["c@far.test"]);
    assert.equal(f.dsns.length, 1);
    assert.equal(f.dsns[0].recipients[0].address, "nobody@local.test");
    assert.equal(f.dsns[0].recipients[0].status, "5.1.1");
    // c@far.test was delivered by the scripted remote agent: the message is done.
    assert.equal(await f.queue.get(id), null);
  } finally {
    await f.close();
  }
});

test("a message at the hop limit is not forwarded: its forwards bounce 5.4.6 at once, its mailboxes are left to the local agent", async () => {
  const f = await fixture({ maxReceived: 50 });
  try {
    const id = await f.submit({ recipients: [{ address: "team@local.test" }, { address: "x@far.test" }], hopCount: 50 });
    assert.equal(f.remote.calls.length, 0, "nothing forwarded");
    assert.deepEqual(f.local.calls.flatMap((c) => c.recipients).sort(), ["a@local.test", "b@local.test"]);
    assert.equal(f.dsns.length, 1);
    assert.deepEqual(f.dsns[0].recipients.map((r) => [r.address, r.action, r.status]), [["team@local.test", "failed", "5.4.6"], ["x@far.test", "failed", "5.4.6"]]);
    assert.match(f.dsns[0].recipients[0].diagnostic ?? "", /^mail forwarding loop: too many hops \(50 Received fields, limit 50\); not forwarded to <c@far\.test>$/);
    assert.equal(await f.queue.get(id), null);

    // One hop fewer is forwarded.
    await f.submit({ recipients: [{ address: "x@far.test" }], hopCount: 49 });
    assert.deepEqual(f.remote.calls.map((c) => c.recipients), [["x@far.test"]]);
  } finally {
    await f.close();
  }
});

test("state survives a restart: deferred stays deferred with its attempts, then delivers", async () => {
  const f = await fixture();
  try {
    f.remote.answer = () => ({ status: "deferred", enhanced: "4.4.1", diagnostic: "connection refused" });
    const id = await f.submit({ recipients: [{ address: "x@far.test" }] });
    await f.restart();
    const item = (await f.queue.get(id))!.item;
    assert.equal(item.recipients[0].status, "deferred");
    assert.equal(item.recipients[0].attempts, 1);
    assert.equal(f.remote.calls.length, 1, "not retried early after restart");
    f.remote.answer = () => ({ status: "delivered", dsn: "final" });
    f.clock.advance(5 * MIN);
    await f.queue.idle();
    assert.equal(f.remote.calls.length, 2);
    assert.deepEqual(await f.spool.list(), []);
  } finally {
    await f.close();
  }
});

test("a message queued while the manager was down is picked up on start", async () => {
  const f = await fixture();
  try {
    await f.queue.stop();
    const w = await f.spool.create();
    await w.write(Buffer.from("x\r\n"));
    await w.commit({ mailFrom: "", recipients: [{ address: "alice@local.test" }], smtputf8: false, requireTls: false, receivedAt: f.clock.now(), client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "mx" } });
    await f.restart();
    assert.deepEqual(f.local.calls.map((c) => c.recipients), [["alice@local.test"]]);
  } finally {
    await f.close();
  }
});

test("expiry: still deferred after the lifetime → bounced 4.4.7 with the last error", async () => {
  const f = await fixture({ settings: { lifetime: 2 * HOUR, delayWarning: 0 } });
  try {
    f.remote.answer = () => ({ status: "deferred", enhanced: "4.4.1", diagnostic: "connection timed out" });
    await f.submit({ recipients: [{ address: "x@far.test" }] });
    for (let i = 0; i < 10 && f.dsns.length === 0; i++) {
      f.clock.advance(HOUR);
      await f.queue.idle();
    }
    assert.equal(f.dsns.length, 1);
    assert.equal(f.dsns[0].recipients[0].status, "4.4.7");
    assert.match(f.dsns[0].recipients[0].diagnostic ?? "", /connection timed out/);
    assert.deepEqual(await f.spool.list(), []);
  } finally {
    await f.close();
  }
});

test("expiry: a last error that names its bounce status (REQUIRETLS, RFC 8689 §5) bounces with it, after the retries, across a restart", async () => {
  const f = await fixture({ settings: { lifetime: 2 * HOUR, delayWarning: 0 } });
  try {
    f.remote.answer = () => ({ status: "deferred", enhanced: "4.7.30", diagnostic: "mx.far.test does not offer REQUIRETLS", bounceStatus: "5.7.30" });
    await f.submit({ recipients: [{ address: "x@far.test" }], requireTls: true });
    f.clock.advance(HOUR);
    await f.queue.idle();
    await f.restart();
    for (let i = 0; i < 10 && f.dsns.length === 0; i++) {
      f.clock.advance(HOUR);
      await f.queue.idle();
    }
    assert.ok(f.remote.calls.length >= 2, "retried before bouncing");
    assert.equal(f.dsns.length, 1);
    assert.equal(f.dsns[0].recipients[0].status, "5.7.30");
    assert.match(f.dsns[0].recipients[0].diagnostic ?? "", /does not offer REQUIRETLS/);
  } finally {
    await f.close();
  }
});

test("a delay warning is sent once after delayWarning", async () => {
  const f = await fixture({ settings: { delayWarning: 30 * MIN } });
  try {
    f.remote.answer = () => ({ status: "deferred", enhanced: "4.4.1", diagnostic: "connection refused" });
    await f.submit({ recipients: [{ address: "x@far.test" }] });
    for (let i = 0; i < 6; i++) {
      f.clock.advance(20 * MIN);
      await f.queue.idle();
    }
    const delayed = f.dsns.filter((d) => d.recipients[0].action === "delayed");
    assert.equal(delayed.length, 1);
    assert.ok(delayed[0].recipients[0].willRetryUntil instanceof Date);
  } finally {
    await f.close();
  }
});

test("hold stops attempts until release; retry makes deferred due now; delete removes without a bounce", async () => {
  const f = await fixture();
  try {
    f.remote.answer = () => ({ status: "deferred", enhanced: "4.4.1", diagnostic: "refused" });
    const id = await f.submit({ recipients: [{ address: "x@far.test" }] });
    assert.equal(await f.queue.hold(id), true);
    f.clock.advance(HOUR);
    await f.queue.idle();
    assert.equal(f.remote.calls.length, 1, "held: no attempt");
    assert.equal((await f.queue.get(id))!.item.held, true);
    await f.queue.release(id);
    await f.queue.idle();
    assert.equal(f.remote.calls.length, 2, "released and overdue: attempted");
    assert.deepEqual(await f.queue.retry(id), { scheduled: 1, held: [] });
    await f.queue.idle();
    assert.equal(f.remote.calls.length, 3, "retry: attempted at once");
    // Held again: retry leaves it alone and says so; nothing is attempted.
    await f.queue.hold(id);
    assert.deepEqual(await f.queue.retry(id), { scheduled: 0, held: [id] });
    assert.deepEqual(await f.queue.retry("all"), { scheduled: 0, held: [id] });
    await f.queue.idle();
    assert.equal(f.remote.calls.length, 3, "retry of a held message: no attempt");
    assert.equal(await f.queue.retry("01AAAAAAAAAAAAAAAA"), null);
    assert.equal(await f.queue.delete(id), true);
    assert.deepEqual(await f.spool.list(), []);
    assert.deepEqual(f.dsns, []);
    assert.equal(await f.queue.delete("01AAAAAAAAAAAAAAAA"), false);
  } finally {
    await f.close();
  }
});

test("fairness: one mailing to a destination does not starve another sender's message there", async () => {
  const f = await fixture({ settings: { perDestination: 1, concurrency: 1, recipientsPerDelivery: 1 } });
  try {
    let release!: () => void;
    f.remote.gate = new Promise((r) => (release = r));
    // A mailing with 20 recipients at big.test, then one person's message to big.test.
    const mailing = Array.from({ length: 20 }, (_, i) => ({ address: `r${i}@big.test` }));
    const w1 = await f.spool.create();
    await w1.write(Buffer.from("mailing\r\n"));
    await w1.commit({ mailFrom: "list@far.test", recipients: mailing, smtputf8: false, requireTls: false, receivedAt: f.clock.now(), client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "mx" } });
    f.queue.enqueue(w1.id);
    const w2 = await f.spool.create();
    await w2.write(Buffer.from("personal\r\n"));
    await w2.commit({ mailFrom: "bob@far.test", recipients: [{ address: "friend@big.test" }], smtputf8: false, requireTls: false, receivedAt: f.clock.now(), client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "mx" } });
    f.queue.enqueue(w2.id);
    // Both messages are loaded while the first delivery is blocked; then release.
    for (let i = 0; i < 1000 && (!(await f.queue.get(w1.id)) || !(await f.queue.get(w2.id))); i++) await new Promise((r) => setImmediate(r));
    assert.ok(await f.queue.get(w2.id), "second message loaded");
    release();
    f.remote.gate = null;
    await f.queue.idle();
    const order = f.remote.calls.map((c) => c.body.trim());
    const personalAt = order.indexOf("personal");
    assert.ok(personalAt >= 0 && personalAt <= 2, `personal message delivered early (position ${personalAt} of ${order.length})`);
    assert.equal(order.length, 21);
  } finally {
    await f.close();
  }
});

test("concurrency per destination is respected", async () => {
  const f = await fixture({ settings: { perDestination: 2, concurrency: 10, recipientsPerDelivery: 1 } });
  try {
    let inFlight = 0;
    let max = 0;
    const remote = f.remote;
    const original = remote.deliver.bind(remote);
    remote.deliver = async (req) => {
      inFlight++;
      max = Math.max(max, inFlight);
      await new Promise((r) => setImmediate(r));
      try {
        return await original(req);
      } finally {
        inFlight--;
      }
    };
    await f.submit({ recipients: Array.from({ length: 8 }, (_, i) => ({ address: `r${i}@one.test` })) });
    assert.equal(remote.calls.length, 8);
    assert.equal(max, 2);
  } finally {
    await f.close();
  }
});

test("work per message stays constant as the queue grows: each recipient is routed once", async () => {
  const f = await fixture({ settings: { concurrency: 4, perDestination: 4 } });
  try {
    let routed = 0;
    const queue = f.queue as unknown as { deps: { router: { route: (a: string, k: "mailbox" | "forward") => unknown } } };
    const router = queue.deps.router;
    const original = router.route.bind(router);
    router.route = (a, k) => {
      routed++;
      return original(a, k);
    };
    const n = 1500;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const w = await f.spool.create();
      await w.write(Buffer.from(`m${i}\r\n`));
      await w.commit({ mailFrom: "s@far.test", recipients: [{ address: `u${i % 7}@local.test` }], smtputf8: false, requireTls: false, receivedAt: f.clock.now(), client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "mx" } });
      ids.push(w.id);
    }
    for (const id of ids) f.queue.enqueue(id);
    await f.queue.idle();
    assert.equal(f.local.calls.length, n);
    assert.equal(routed, n, "one routing decision per recipient, not one per dispatch");
    assert.deepEqual(await f.spool.list(), []);
  } finally {
    await f.close();
  }
});

test("a recipient the agent gave no outcome for is deferred, saying so; the others keep theirs (outcomes by address, not position)", async () => {
  const f = await fixture();
  try {
    f.remote.answer = (r) => (r.startsWith("lost") ? undefined : r.startsWith("bad") ? { status: "failed", enhanced: "5.1.1", diagnostic: "550 5.1.1 no such user" } : { status: "delivered", dsn: "relayed" });
    const id = await f.submit({ recipients: [{ address: "bad@far.test" }, { address: "lost@far.test" }, { address: "ok@far.test" }] });
    const rcpts = (await f.queue.get(id))!.item.recipients;
    assert.deepEqual(rcpts.map((r) => [r.address, r.status]), [["bad@far.test", "bounced"], ["lost@far.test", "deferred"], ["ok@far.test", "delivered"]]);
    assert.equal(rcpts[1].lastError, "4.3.0 the remote delivery agent gave no outcome for this recipient");
  } finally {
    await f.close();
  }
});

test("success DSNs (NOTIFY=SUCCESS): final → delivered, relayed → relayed with the Remote-MTA, passed → none (the next hop reports)", async () => {
  const f = await fixture();
  try {
    f.remote.answer = (r) => ({ status: "delivered", dsn: r.startsWith("p") ? "passed" : "relayed", detail: "250 2.0.0 Ok: queued as R1", remoteMta: "mx.far.test" });
    f.local.answer = () => ({ status: "delivered", dsn: "final", detail: "delivered to maildir" });
    await f.submit({ recipients: ["p@far.test", "r@far.test", "alice@local.test"].map((address) => ({ address, notify: ["SUCCESS"] as const })) });
    const reported = f.dsns.flatMap((d) => d.recipients).map((r) => [r.address, r.action, r.status, r.remoteMta ?? ""]).sort();
    assert.deepEqual(reported, [["alice@local.test", "delivered", "2.0.0", ""], ["r@far.test", "relayed", "2.0.0", "mx.far.test"]]);
  } finally {
    await f.close();
  }
});
