/**
 * What each verdict does to a message, end to end through a whole Petrel
 * (startMta) with one more check appended to the pipeline, as a plugin
 * would be: reject and a failing check refuse at the end of data and the
 * session goes on; quarantine holds the message in the queue with its
 * reason (the CLI shows it) until released; discard answers 250 and stores
 * nothing; the headers and Authentication-Results decided at the end of
 * data, a folder and recipient changes reach the delivered Maildir file;
 * a forged Authentication-Results field claiming our name is removed.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Check, CheckResult } from "../../src/policy/check.ts";
import { reject } from "../../src/policy/replies.ts";
import { queueCommand } from "../../src/cli/queue-commands.ts";
import { io, smtp, start, until, type Running } from "./fixtures/mta-helpers.ts";

/** Decides by the Subject; observes the content as it streams and records how much it saw. */
const seen: number[] = [];
const verdicts: Check = {
  name: "verdicts",
  open: () => ({
    message: () => {
      let octets = 0;
      return {
        // Every other chunk makes the stream wait a turn (back-pressure).
        body: (chunk) => {
          octets += chunk.length;
          return octets % 2 === 0 ? new Promise<void>((r) => setImmediate(r)) : undefined;
        },
        endOfData: (header): CheckResult | undefined => {
          seen.push(octets);
          const subject = header.find((f) => f.name.toLowerCase() === "subject")?.value ?? "";
          switch (subject) {
            case "reject": return reject(550, "5.7.1", "Message content rejected", "test says no");
            case "crash": throw new Error("a bug in a check");
            case "quarantine": return { verdict: { action: "quarantine", reason: "looks odd" } };
            case "discard": return { verdict: { action: "discard", reason: "sink" } };
            case "junk": return { folder: "Junk", headers: [{ name: "X-Spam", value: "yes" }], authResults: ["spf=pass smtp.mailfrom=bob@example.test"] };
            case "reroute": return { recipients: { add: ["bob@example.test"], remove: ["alice@example.test"] } };
            default: return undefined;
          }
        },
      };
    },
  }),
};

let r: Running;
before(async () => {
  r = await start({}, undefined, undefined, { checks: [verdicts] });
});
after(async () => {
  await r.stop();
  await rm(r.dir, { recursive: true, force: true });
});

function send(subject: string, extraHeader = ""): Promise<string> {
  return smtp(r.mx, [
    "EHLO client.test", "MAIL FROM:<someone@example.org>", "RCPT TO:<alice@example.test>", "DATA",
    `${extraHeader}Subject: ${subject}\r\n\r\nhello\r\n.`, "QUIT",
  ]);
}

function finalReply(transcript: string): string {
  return transcript.split("\r\n").filter((l) => /^\d{3} /.test(l)).at(-2)!;
}

async function files(address: string, folder = ""): Promise<string[]> {
  const [local, domain] = address.split("@");
  const dir = join(r.dir, "mail", domain, local, folder, "new");
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(names.sort().map((n) => readFile(join(dir, n), "utf8")));
}

test("reject and a failing check refuse at the end of data; nothing is stored; the session continues", async () => {
  const t = await smtp(r.mx, [
    "EHLO client.test",
    "MAIL FROM:<someone@example.org>", "RCPT TO:<alice@example.test>", "DATA", "Subject: reject\r\n\r\nx\r\n.",
    "MAIL FROM:<someone@example.org>", "RCPT TO:<alice@example.test>", "DATA", "Subject: crash\r\n\r\nx\r\n.",
    "MAIL FROM:<someone@example.org>", "RCPT TO:<alice@example.test>", "DATA", "Subject: fine\r\n\r\nx\r\n.",
    "QUIT",
  ]);
  const ends = t.split("\r\n").filter((l) => /^(250 2\.0\.0|550|451) /.test(l)).map((l) => l.replace(/queued as \S+/, "queued as ID"));
  assert.deepEqual(ends, [
    "550 5.7.1 Message content rejected",
    "451 4.3.0 Error: temporary failure, try again later",
    "250 2.0.0 Ok: queued as ID",
  ], t);
  await until(async () => (await files("alice@example.test")).some((m) => m.includes("Subject: fine")), "the fine one delivered");
  assert.ok(!(await files("alice@example.test")).some((m) => /Subject: (reject|crash)/.test(m)));
});

test("quarantine: 250, held in the queue with the reason (petrel queue list shows it), delivered once released", async () => {
  const reply = finalReply(await send("quarantine"));
  const id = /queued as (\S+)/.exec(reply)![1];
  const item = await until(async () => (await r.mta.queue.list()).find((m) => m.id === id), "queued");
  assert.equal(item.held, true);
  assert.equal(item.heldReason, "verdicts: looks odd");
  const cli = io();
  assert.equal(await queueCommand(["list", "--config", r.configPath], cli.io), 0, cli.err());
  assert.match(cli.out(), new RegExp(`^${id} \\(held: verdicts: looks odd\\)`, "m"));
  await r.mta.queue.idle();
  assert.ok(!(await files("alice@example.test")).some((m) => m.includes("Subject: quarantine")), "not delivered while held");
  assert.equal(await r.mta.queue.release(id), true);
  await until(async () => (await files("alice@example.test")).some((m) => m.includes("Subject: quarantine")), "delivered after release");
});

test("discard: 250 to the client, nothing stored, nothing delivered", async () => {
  const before = (await files("alice@example.test")).length;
  const reply = finalReply(await send("discard"));
  assert.match(reply, /^250 2\.0\.0 Ok: queued as \S+$/);
  const id = /queued as (\S+)/.exec(reply)![1];
  await r.mta.queue.idle();
  assert.ok(!(await r.mta.smtp.spool.list()).includes(id));
  assert.equal(await r.mta.queue.get(id), null);
  assert.equal((await files("alice@example.test")).length, before);
});

test("decided headers, Authentication-Results and a folder reach the delivered file; a forged A-R claiming our name is removed", async () => {
  const forged = "Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\nAuthentication-Results: other.test; spf=fail\r\n";
  finalReply(await send("junk", forged));
  const [m] = await until(async () => { const f = await files("alice@example.test", ".Junk"); return f.length > 0 && f; }, "delivered into .Junk");
  const head = m.slice(0, m.indexOf("\n\n"));
  assert.match(head, /^Return-Path: <someone@example\.org>\nX-Original-To: alice@example\.test\nDelivered-To: alice@example\.test\nAuthentication-Results: mx\.example\.test;\n\tspf=pass smtp\.mailfrom=bob@example\.test\nX-Spam: yes\nReceived: from client\.test/);
  assert.ok(!head.includes("bank.test"), "the forged field is gone");
  assert.match(head, /\nAuthentication-Results: other\.test; spf=fail\n/, "another server's field stays");
  assert.ok(!(await files("alice@example.test")).some((x) => x.includes("Subject: junk")), "not in the inbox");
});

test("recipients changed at the end of data: delivered to the added one, not the removed one; the observer saw the content", async () => {
  const bobBefore = (await files("bob@example.test")).length;
  finalReply(await send("reroute"));
  await until(async () => (await files("bob@example.test")).length > bobBefore, "delivered to bob");
  await r.mta.queue.idle();
  assert.ok(!(await files("alice@example.test")).some((x) => x.includes("Subject: reroute")));
  assert.ok(seen.every((n) => n > 100), `every message's content was observed, our Received: field included: ${seen}`);
});
