/**
 * Bounces go through the one intake: the queue's DSN sender composes the
 * report with the original as every agent reads it (decided headers
 * applied), hands it to the intake, which builds its envelope (from the
 * local system, null sender), stores it and tells the queue — which then
 * delivers it like any other message.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import pino from "pino";
import { FileSpool } from "../../src/spool/file-spool.ts";
import { QueueManager } from "../../src/queue/queue-manager.ts";
import { SqliteQueueStore } from "../../src/queue/sqlite-queue-store.ts";
import type { DeliveryAgent, DeliveryOutcomes, DeliveryRequest } from "../../src/queue/ports.ts";
import { createRouter } from "../../src/delivery/router.ts";
import { createDsnSender } from "../../src/delivery/bounce-agent.ts";
import { Intake } from "../../src/intake/intake.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { readAll, tempDir } from "../spool/helpers.ts";

test("a DSN for a failed recipient enters through the intake, returns the original with its decided headers, and is delivered", async () => {
  const { dir, cleanup } = await tempDir();
  const clock = new ManualClock();
  const log = pino({ level: "silent" });
  const spool = new FileSpool(join(dir, "spool"), { fsync: false });
  await spool.open();
  const delivered: { recipients: readonly string[]; body: string; from: string }[] = [];
  const agent: DeliveryAgent = {
    async deliver(req: DeliveryRequest): Promise<DeliveryOutcomes> {
      const body = (await readAll(req.body())).toString();
      delivered.push({ recipients: req.recipients, body, from: req.envelope.mailFrom });
      return new Map(req.recipients.map((r) => [r, r.startsWith("gone@")
        ? { status: "failed" as const, enhanced: "5.1.1", diagnostic: "550 5.1.1 no such user" }
        : { status: "delivered" as const, dsn: "final" as const }]));
    },
  };
  let queue: QueueManager | undefined;
  const intake = new Intake({ spool, hostname: "mx.example.test", primaryDomain: "example.test", headerSizeLimit: 65536, clock, log, onCommitted: (id) => queue?.enqueue(id) });
  queue = new QueueManager({
    spool,
    store: new SqliteQueueStore(join(dir, "state"), { fsync: false }),
    resolve: async (address) => ({ kind: "local", targets: [{ type: "mailbox", address }] }),
    router: createRouter({ local: agent, remote: agent }),
    sendDsn: createDsnSender({ submit: (m) => intake.submit(m), hostname: "mx.example.test", clock }),
    clock, log,
    settings: { minBackoff: 1, maxBackoff: 1, lifetime: 1e9, bounceLifetime: 1e9, delayWarning: 0, concurrency: 4, perDestination: 4, recipientsPerDelivery: 10, activeLimit: 20_000 },
  });
  try {
    await queue.start();
    const m = await intake.begin({
      mailFrom: "sender@example.org",
      recipients: [{ address: "gone@example.test" }],
      params: { smtputf8: false, requireTls: false },
      client: { address: "192.0.2.1", port: 1, helo: "c.test", protocol: "ESMTP", role: "mx" },
      submission: false,
    });
    await m.write(Buffer.from("X-Secret: forged\r\nSubject: will bounce\r\n\r\nbody\r\n"));
    const header = await m.end();
    await m.commit({
      prepend: [{ name: "X-Decided", value: "yes" }],
      headerEdits: [{ op: "delete", name: "X-Secret", index: 1 }],
      recipients: { add: [], remove: [] },
    }, header!);
    await queue.idle();

    assert.deepEqual(delivered.map((d) => [d.from, d.recipients]), [["sender@example.org", ["gone@example.test"]], ["", ["sender@example.org"]]]);
    const dsn = delivered[1].body;
    assert.match(dsn, /^From: Mail Delivery System <MAILER-DAEMON@mx\.example\.test>\r\n/);
    const original = dsn.slice(dsn.indexOf("Content-Type: message/rfc822"));
    assert.match(original, /\r\n\r\nX-Decided: yes\r\nReceived: from c\.test/, "the original as agents read it: decided fields on top");
    assert.ok(!original.includes("X-Secret"), "the deleted field is not returned either");
    assert.deepEqual(await spool.list(), [], "both delivered and removed");
  } finally {
    await queue.stop();
    await spool.close();
    await cleanup();
  }
});
