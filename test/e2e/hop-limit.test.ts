/**
 * Mail loops are stopped where mail enters (RFC 5321 §6.3; Postfix checks
 * hopcount_limit when mail is received): a message whose header section,
 * with this server's Received: field, carries delivery.maxReceived of them
 * is refused at the end of DATA or BDAT with 554 5.4.6 — the client keeps
 * it, nothing is stored, nobody here sends a bounce.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { smtp, start, until } from "./fixtures/mta-helpers.ts";

function withReceived(n: number, rest = "Subject: loop\r\n\r\nReceived: in the body does not count\r\nhi"): string {
  return Array.from({ length: n }, (_, i) => `Received: from hop${i}.test\r\n\tby hop${i + 1}.test; Mon, 1 Jan 2024 00:00:00 +0000`).join("\r\n") + "\r\n" + rest;
}

test("DATA: 49 Received: fields (50 with ours, the default limit) are refused 554 5.4.6 and nothing is stored or bounced; 48 are accepted", async () => {
  const r = await start();
  try {
    const t = await smtp(r.mx, [
      "EHLO client.test",
      "MAIL FROM:<bob@example.test>", "RCPT TO:<alice@example.test>", "DATA", withReceived(49) + "\r\n.",
      "MAIL FROM:<bob@example.test>", "RCPT TO:<alice@example.test>", "DATA", withReceived(48) + "\r\n.",
      "QUIT",
    ]);
    const replies = t.split("\r\n").filter((l) => /^(250 2\.0\.0|554) /.test(l));
    assert.deepEqual(replies.map((l) => l.replace(/queued as \S+/, "queued as ID")), [
      "554 5.4.6 Error: mail forwarding loop: too many hops (50 Received: fields, limit 50)",
      "250 2.0.0 Ok: queued as ID",
    ], t);
    const [msg] = await until(async () => (await r.maildir("alice@example.test")).length === 1 && r.maildir("alice@example.test"), "the accepted one");
    assert.equal(msg.slice(0, msg.indexOf("\n\n")).match(/^Received: /gm)?.length, 49, "48 and ours");
    await until(async () => (await r.mta.smtp.spool.list()).length === 0, "spool empty");
    await r.mta.queue.idle();
    assert.deepEqual(await r.maildir("bob@example.test"), [], "no bounce for the refused message (no backscatter)");
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

test("BDAT and a configured delivery.maxReceived: refused at BDAT LAST with the same reply", async () => {
  const r = await start({ delivery: { maxReceived: 5 } });
  try {
    const looping = withReceived(4, "Subject: x\r\n\r\nhi\r\n");
    const fine = withReceived(3, "Subject: y\r\n\r\nhi\r\n");
    const t = await smtp(r.mx, [
      "EHLO client.test",
      "MAIL FROM:<bob@example.test>", "RCPT TO:<alice@example.test>", `BDAT ${Buffer.byteLength(looping)} LAST\r\n${looping}`.slice(0, -2),
      "MAIL FROM:<bob@example.test>", "RCPT TO:<alice@example.test>", `BDAT ${Buffer.byteLength(fine)} LAST\r\n${fine}`.slice(0, -2),
      "QUIT",
    ]);
    assert.match(t, /\r\n554 5\.4\.6 Error: mail forwarding loop: too many hops \(5 Received: fields, limit 5\)\r\n/);
    assert.match(t, /\r\n250 2\.0\.0 Ok: queued as \S+\r\n/);
    // Far past the limit: the reply counts them all.
    const many = withReceived(120, "Subject: z\r\n\r\nhi\r\n");
    const t2 = await smtp(r.mx, ["EHLO client.test", "MAIL FROM:<bob@example.test>", "RCPT TO:<alice@example.test>", "DATA", many + ".", "QUIT"]);
    assert.match(t2, /\r\n554 5\.4\.6 Error: mail forwarding loop: too many hops \(121 Received: fields, limit 5\)\r\n/);
    await until(async () => (await r.maildir("alice@example.test")).length === 1, "the accepted one");
    await until(async () => (await r.mta.smtp.spool.list()).length === 0, "spool empty");
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});
