/**
 * rspamd as a milter of a whole Petrel: what an SMTP client is answered and
 * what lands in the Maildir. (test/policy/milter/rspamd.test.ts drives the
 * check itself; the two files share rspamd's compiled caches.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { GTUBE, rspamdForThisFile } from "../support/milter-peers.ts";
import { smtp, start, until } from "./fixtures/mta-helpers.ts";

const rspamd = rspamdForThisFile();

test("rspamd through Petrel: GTUBE refused at the end of DATA with rspamd's reply, nothing stored; a normal message delivered with rspamd's headers", async () => {
  const r = await start({ milters: [{ name: "rspamd", address: rspamd().address }] });
  try {
    const spam = await smtp(r.mx, [
      "EHLO client.test", "MAIL FROM:<carol@far.test>", "RCPT TO:<bob@example.test>", "DATA",
      `From: carol@far.test\r\nTo: bob@example.test\r\nSubject: offer\r\n\r\n${GTUBE}\r\n.`,
      "MAIL FROM:<carol@far.test>", "RCPT TO:<bob@example.test>", "DATA",
      "From: Carol <carol@far.test>\r\nTo: Bob <bob@example.test>\r\nSubject: lunch\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <lunch-1@far.test>\r\n\r\nLunch on Friday?\r\n.",
      "QUIT",
    ]);
    assert.match(spam, /\r\n354 [^\r]*\r\n554 5\.7\.1 Gtube pattern\r\n250 2\.1\.0 /, "refused, and the session goes on");
    const queued = /\r\n250 2\.0\.0 Ok: queued as (\S+)\r\n221 /.exec(spam);
    assert.ok(queued, spam);
    const [delivered] = await until(async () => (await r.maildir("bob@example.test")).length === 1 && r.maildir("bob@example.test"), "delivery");
    assert.match(delivered, /\nX-Spamd-Result: default: False \[[-0-9.]+ \/ 15\.00\];\n\t/);
    assert.match(delivered, /\nX-Spam-Status: No, score=[-0-9.]+\n/);
    assert.match(delivered, new RegExp(`\nX-Rspamd-Queue-Id: ${queued[1]}\n`), "the filter was told the queue id (macro i) at DATA");
    assert.ok(delivered.endsWith("\nLunch on Friday?\n"));
    await until(async () => (await r.mta.smtp.spool.list()).length === 0, "spool emptied");
    assert.equal((await r.maildir("bob@example.test")).length, 1, "the GTUBE message was never stored");
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});
