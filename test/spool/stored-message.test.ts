/**
 * The header decisions made at the end of data (prepended fields, edits of
 * the stored header section) are kept with the envelope and applied by one
 * function whenever the message is read back: the same bytes whatever the
 * chunking, the size predicted exactly, and — in both spool formats — still
 * there after the spool is closed and opened again (a restart).
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { FileSpool } from "../../src/spool/file-spool.ts";
import { JournalSpool } from "../../src/spool/journal-spool.ts";
import type { Spool } from "../../src/spool/spool.ts";
import { storedMessage, storedSize } from "../../src/spool/stored-message.ts";
import type { HeaderEdit } from "../../src/mail/header-field.ts";
import { HeaderSection } from "../../src/smtp/header-section.ts";
import { readAll, sampleEnvelope, tempDir } from "./helpers.ts";

const MESSAGE =
  "Received: from a.test\r\n\tby mx.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
  "Authentication-Results: mx.test; spf=pass\r\n" +
  "Subject: hello\r\n" +
  "Authentication-Results: other.test;\r\n dkim=pass\r\n" +
  "To: b@c.test\r\n" +
  "\r\n" +
  "Subject: a body line that looks like a header\r\nAuthentication-Results: mx.test; none\r\n";

function chunked(text: string, size: number): Readable {
  const bytes = Buffer.from(text, "utf8");
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return Readable.from(parts);
}

async function apply(text: string, edits: readonly HeaderEdit[], prepend = "", size = 1 << 20): Promise<string> {
  const out = storedMessage(sampleEnvelope({ ...(prepend ? { prepend } : {}), headerEdits: edits }), chunked(text, size));
  return (await readAll(out)).toString("utf8");
}

/** The fields of the header section, as the intake collects them. */
function fieldsOf(text: string) {
  const h = new HeaderSection({ sizeLimit: 1 << 20, collect: true });
  h.feed(Buffer.from(text, "utf8"));
  h.finish();
  return h.collected;
}

describe("storedMessage", () => {
  test("without decisions the spool's stream is handed on as it is", () => {
    const body = chunked(MESSAGE, 10);
    assert.equal(storedMessage(sampleEnvelope(), body), body);
  });

  test("prepended fields come first, then the message untouched", async () => {
    const out = await apply(MESSAGE, [], "Authentication-Results: mx.test;\r\n\tdkim=pass\r\nX-Spam: no\r\n", 7);
    assert.equal(out, "Authentication-Results: mx.test;\r\n\tdkim=pass\r\nX-Spam: no\r\n" + MESSAGE);
  });

  test("delete, change and insert refer to the section as stored, fold lines included; the body is never touched", async () => {
    const edits: HeaderEdit[] = [
      { op: "delete", name: "authentication-results", index: 2 },
      { op: "change", name: "Subject", index: 1, value: "changed\r\n\tover two lines" },
      { op: "insert", position: 1, field: { name: "X-Inserted", value: "before the first A-R" } },
      { op: "insert", position: 0, field: { name: "X-Top", value: "1" } },
    ];
    const expected =
      "X-Top: 1\r\n" +
      "Received: from a.test\r\n\tby mx.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
      "X-Inserted: before the first A-R\r\n" +
      "Authentication-Results: mx.test; spf=pass\r\n" +
      "Subject: changed\r\n\tover two lines\r\n" +
      "To: b@c.test\r\n" +
      "\r\n" +
      "Subject: a body line that looks like a header\r\nAuthentication-Results: mx.test; none\r\n";
    for (const size of [1, 2, 3, 5, 13, 64, 1 << 20]) assert.equal(await apply(MESSAGE, edits, "", size), expected, `chunks of ${size}`);
  });

  test("a change past the last field of that name, or an insert past the last field, goes at the end of the section", async () => {
    const out = await apply(MESSAGE, [
      { op: "change", name: "X-Spam-Flag", index: 1, value: "YES" },
      { op: "insert", position: 99, field: { name: "X-Last", value: "z" } },
      { op: "delete", name: "Subject", index: 7 },
    ]);
    assert.equal(out, MESSAGE.replace("To: b@c.test\r\n\r\n", "To: b@c.test\r\nX-Last: z\r\nX-Spam-Flag: YES\r\n\r\n"));
  });

  test("a message that is only a header section (no blank line) is edited too", async () => {
    assert.equal(
      await apply("A: 1\r\nB: 2\r\n", [{ op: "delete", name: "A", index: 1 }, { op: "change", name: "C", index: 1, value: "3" }], "", 3),
      "B: 2\r\nC: 3\r\n",
    );
    assert.equal(await apply("A: 1\r\nB: 2", [{ op: "delete", name: "A", index: 1 }]), "B: 2");
  });

  test("values from filters are written with CRLF folds (OpenDKIM folds with bare LF); a value cannot start a new field", async () => {
    const out = await apply("A: 1\r\n\r\nbody\r\n", [
      { op: "insert", position: 0, field: { name: "DKIM-Signature", value: "v=1; a=rsa-sha256;\n\tb=abc\n\tdef" } },
      { op: "insert", position: 1, field: { name: "X-Evil", value: "x\r\nBcc: victim@example.test\r\n\r\nbody" } },
      { op: "insert", position: 1, field: { name: "Bad Name", value: "dropped" } },
    ]);
    assert.equal(out, "DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\n\tdef\r\nA: 1\r\nX-Evil: x\r\n\tBcc: victim@example.test\r\n\tbody\r\n\r\nbody\r\n");
  });

  test("storedSize predicts the size of what storedMessage gives", async () => {
    const prepend = "Authentication-Results: mx.test;\r\n\tspf=pass\r\n";
    const edits: HeaderEdit[] = [
      { op: "delete", name: "Authentication-Results", index: 1 },
      { op: "change", name: "subject", index: 1, value: "a much longer subject than before" },
      { op: "change", name: "X-New", index: 1, value: "added" },
      { op: "insert", position: 2, field: { name: "X-Ins", value: "i" } },
    ];
    const out = await apply(MESSAGE, edits, prepend, 11);
    assert.equal(storedSize(Buffer.byteLength(MESSAGE), prepend, edits, fieldsOf(MESSAGE)), Buffer.byteLength(out));
  });

  test("a reader that stops early releases the spool's stream", async () => {
    const body = chunked(MESSAGE + "x".repeat(100_000), 100);
    const out = storedMessage(sampleEnvelope({ headerEdits: [{ op: "delete", name: "To", index: 1 }] }), body);
    for await (const _ of out) break;
    await new Promise((r) => setImmediate(r));
    assert.equal(body.destroyed, true);
  });
});

for (const [format, make] of [
  ["files", (dir: string) => new FileSpool(dir, { fsync: false })],
  ["journal", (dir: string) => new JournalSpool(dir, { fsync: false })],
] as const) {
  test(`spool.format ${format}: decisions committed with the envelope are applied after the spool is opened again`, async () => {
    const { dir, cleanup } = await tempDir();
    const prepend = "Authentication-Results: mx.test;\r\n\tdkim=pass header.d=c.test\r\n";
    const headerEdits: HeaderEdit[] = [{ op: "delete", name: "Authentication-Results", index: 1 }];
    let spool: Spool = make(dir);
    try {
      await spool.open();
      const w = await spool.create();
      await w.write(Buffer.from(MESSAGE));
      await w.commit(sampleEnvelope({ prepend, headerEdits, hold: "spam: score 12", folder: "Junk" }));
      await spool.close();
      spool = make(dir);
      await spool.open();
      const [id] = await spool.list();
      const envelope = await spool.readEnvelope(id);
      assert.equal(envelope.prepend, prepend);
      assert.deepEqual(envelope.headerEdits, headerEdits);
      assert.equal(envelope.hold, "spam: score 12");
      assert.equal(envelope.folder, "Junk");
      assert.equal((await readAll(spool.readBody(id))).toString(), MESSAGE, "the body is stored as received");
      const out = (await readAll(storedMessage(envelope, spool.readBody(id)))).toString();
      assert.equal(out, prepend + MESSAGE.replace("Authentication-Results: mx.test; spf=pass\r\n", ""));
    } finally {
      await spool.close();
      await cleanup();
    }
  });
}
