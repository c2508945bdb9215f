/**
 * The one intake, over both real spool formats: what it stores for a
 * message received over SMTP (our Received: field first, submission's
 * Message-ID: and Date:, the hop count, the decided headers and recipient
 * changes with the envelope, the size as delivered), what checks observing
 * the content see, and DSNs (messages Petrel composes) entering the same way.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import pino from "pino";
import { FileSpool } from "../../src/spool/file-spool.ts";
import { JournalSpool } from "../../src/spool/journal-spool.ts";
import type { Spool } from "../../src/spool/spool.ts";
import { storedMessage } from "../../src/spool/stored-message.ts";
import { Intake, type MessageOrigin } from "../../src/intake/intake.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import type { Decided } from "../../src/policy/merge.ts";
import { readAll, tempDir } from "../spool/helpers.ts";

const ORIGIN: MessageOrigin = {
  mailFrom: "sender@example.org",
  recipients: [{ address: "alice@example.test", notify: ["FAILURE"] }],
  params: { smtputf8: false, requireTls: false, body: "8BITMIME", size: 100 },
  client: { address: "192.0.2.9", port: 4242, helo: "client.example.org", protocol: "ESMTPS", tls: { version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" }, role: "mx" },
  submission: false,
};

const NOTHING: Decided = { prepend: [], headerEdits: [], recipients: { add: [], remove: [] } };

for (const [format, make] of [
  ["files", (dir: string) => new FileSpool(dir, { fsync: false })],
  ["journal", (dir: string) => new JournalSpool(dir, { fsync: false })],
] as const) {
  describe(`intake over spool.format ${format}`, () => {
    async function withIntake(fn: (intake: Intake, spool: Spool, committed: string[]) => Promise<void>): Promise<void> {
      const { dir, cleanup } = await tempDir();
      const spool = make(dir);
      await spool.open();
      const committed: string[] = [];
      const intake = new Intake({
        spool, hostname: "mx.example.test", primaryDomain: "example.test", headerSizeLimit: 4096,
        clock: new ManualClock(Date.UTC(2026, 0, 2, 3, 4, 5)), log: pino({ level: "silent" }), onCommitted: (id) => committed.push(id),
      });
      try {
        await fn(intake, spool, committed);
      } finally {
        await spool.close();
        await cleanup();
      }
    }

    test("our Received: first, the content as written, the envelope from the origin; the queue told after the commit only", async () => {
      await withIntake(async (intake, spool, committed) => {
        const m = await intake.begin(ORIGIN);
        await m.write(Buffer.from("Received: from elsewhere.test\r\nSubject: hi\r\n\r\nbody\r\n"));
        const header = await m.end();
        assert.deepEqual(header!.map((f) => f.name), ["Received", "Received", "Subject"]);
        assert.deepEqual(committed, []);
        const envelope = await m.commit(NOTHING, header!);
        assert.deepEqual(committed, [m.id]);
        const stored = (await readAll(spool.readBody(m.id))).toString();
        assert.equal(stored,
          "Received: from client.example.org ([192.0.2.9])\r\n" +
          "\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\r\n" +
          `\tby mx.example.test (Petrel) with ESMTPS id ${m.id}\r\n\tfor <alice@example.test>; Fri, 2 Jan 2026 03:04:05 +0000\r\n` +
          "Received: from elsewhere.test\r\nSubject: hi\r\n\r\nbody\r\n");
        assert.deepEqual(await spool.readEnvelope(m.id), envelope);
        assert.equal(envelope!.hopCount, 2);
        assert.equal(envelope!.size, Buffer.byteLength(stored));
        assert.equal(envelope!.declaredSize, 100);
        assert.equal(envelope!.body, "8BITMIME");
        assert.deepEqual(envelope!.recipients, ORIGIN.recipients);
        assert.equal(envelope!.prepend, undefined);
        assert.equal(envelope!.headerEdits, undefined);
      });
    });

    test("submission: a missing Message-ID: and Date: are added at the end of the header section, and the checks see them", async () => {
      await withIntake(async (intake, spool) => {
        const m = await intake.begin({ ...ORIGIN, submission: true, client: { ...ORIGIN.client, role: "submission", authUser: "alice@example.test" } });
        await m.write(Buffer.from("Subject: hi\r\n\r\nbody\r\n"));
        const header = await m.end();
        assert.deepEqual(header!.map((f) => `${f.name}: ${f.value}`).slice(1), [
          "Subject: hi", `Message-ID: <${m.id}@mx.example.test>`, "Date: Fri, 2 Jan 2026 03:04:05 +0000",
        ]);
        await m.commit(NOTHING, header!);
        assert.match((await readAll(spool.readBody(m.id))).toString(), /\r\nSubject: hi\r\nMessage-ID: <[^>]+>\r\nDate: [^\r]+\r\n\r\nbody\r\n$/);
      });
    });

    test("decided headers and edits are stored with the envelope and applied on reading; size is the delivered size", async () => {
      await withIntake(async (intake, spool) => {
        const m = await intake.begin(ORIGIN);
        await m.write(Buffer.from("Authentication-Results: mx.example.test; spf=pass\r\nSubject: hi\r\n\r\nbody\r\n"));
        const header = await m.end();
        const envelope = await m.commit({
          prepend: [{ name: "Authentication-Results", value: "mx.example.test;\r\n\tdkim=pass" }, { name: "X-Spam", value: "no" }],
          headerEdits: [{ op: "delete", name: "Authentication-Results", index: 1 }],
          recipients: { add: [], remove: [] },
          hold: "spam: maybe",
          folder: "Junk",
        }, header!);
        assert.equal(envelope!.prepend, "Authentication-Results: mx.example.test;\r\n\tdkim=pass\r\nX-Spam: no\r\n");
        assert.equal(envelope!.hold, "spam: maybe");
        assert.equal(envelope!.folder, "Junk");
        const read = (await readAll(storedMessage(await spool.readEnvelope(m.id), spool.readBody(m.id)))).toString();
        assert.ok(read.startsWith("Authentication-Results: mx.example.test;\r\n\tdkim=pass\r\nX-Spam: no\r\nReceived: "), read);
        assert.ok(!read.includes("spf=pass"));
        assert.ok(read.endsWith("\r\nSubject: hi\r\n\r\nbody\r\n"));
        assert.equal(envelope!.size, Buffer.byteLength(read));
      });
    });

    test("recipients added and removed at the end of data; every recipient removed stores nothing", async () => {
      await withIntake(async (intake, spool, committed) => {
        const m = await intake.begin({ ...ORIGIN, recipients: [{ address: "alice@example.test" }, { address: "bob@example.test" }] });
        await m.write(Buffer.from("Subject: x\r\n\r\n"));
        const envelope = await m.commit({ ...NOTHING, recipients: { add: ["<carol@example.test>", "ALICE@example.test", "not an address", "<Postmaster>"], remove: ["<BOB@example.test>"] } }, (await m.end())!);
        assert.deepEqual(envelope!.recipients.map((r) => r.address), ["alice@example.test", "carol@example.test", "postmaster@example.test"]);
        const gone = await intake.begin(ORIGIN);
        await gone.write(Buffer.from("Subject: y\r\n\r\n"));
        assert.equal(await gone.commit({ ...NOTHING, recipients: { add: [], remove: ["alice@example.test"] } }, (await gone.end())!), null);
        assert.deepEqual(await spool.list(), [m.id]);
        assert.deepEqual(committed, [m.id]);
      });
    });

    test("a header section over the limit: end() says so and nothing is stored", async () => {
      await withIntake(async (intake, spool) => {
        const m = await intake.begin(ORIGIN);
        await m.write(Buffer.from(`X-Big: ${"x".repeat(5000)}\r\n\r\nbody\r\n`));
        assert.equal(await m.end(), null);
        await m.abort();
        assert.deepEqual(await spool.list(), []);
      });
    });

    test("an observer sees exactly the stored octets, Received: first; past the header, writes wait only for the spool", async () => {
      await withIntake(async (intake, spool) => {
        const seen: Buffer[] = [];
        const m = await intake.begin(ORIGIN, (c) => void seen.push(Buffer.from(c)));
        await m.write(Buffer.from("Subject: hi\r\n\r\n"));
        assert.equal(m.write(Buffer.from("a small body line\r\n")), undefined, "no promise for a chunk that neither fills a batch nor waits on an observer");
        await m.commit(NOTHING, (await m.end())!);
        assert.deepEqual(Buffer.concat(seen), await readAll(spool.readBody(m.id)));
      });
    });

    test("a DSN enters the same way: stored as composed, from the local system, the queue told", async () => {
      await withIntake(async (intake, spool, committed) => {
        const content = Buffer.from("From: MAILER-DAEMON@mx.example.test\r\nSubject: Undelivered Mail\r\n\r\nsorry\r\n");
        const id = await intake.submit({ mailFrom: "", recipients: ["sender@example.org"], content, needs8bit: false, smtputf8: false });
        assert.deepEqual(committed, [id]);
        assert.deepEqual(await readAll(spool.readBody(id)), content);
        const envelope = await spool.readEnvelope(id);
        assert.equal(envelope.mailFrom, "");
        assert.deepEqual(envelope.recipients, [{ address: "sender@example.org" }]);
        assert.equal(envelope.client.role, "local");
        assert.equal(envelope.size, content.length);
      });
    });
  });
}
