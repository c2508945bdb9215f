import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { LocalAgent, maildirPathFor } from "../../src/delivery/local-agent.ts";
import { deliverAll, lf, request, tempDir } from "./helpers.ts";

const message = Buffer.from("Received: from a by b\r\nSubject: hello\r\n\r\nHi.\r\n.\r\n");

async function only(dir: string): Promise<string> {
  const names = await readdir(join(dir, "new"));
  assert.equal(names.length, 1, `one message in ${dir}`);
  return readFile(join(dir, "new", names[0]), "latin1");
}

test("delivers each recipient into <root>/<domain>/<localpart>/ (lower-cased) with its own Delivered-To", async (t) => {
  const root = await tempDir(t);
  const agent = new LocalAgent({ maildirRoot: root, hostname: "mx" });
  const out = await deliverAll(agent, request(message, "s@example.org", ["Alice@Example.COM", "bob@example.com"]));
  assert.deepEqual(out.map((o) => o.status), ["delivered", "delivered"]);
  assert.equal(await only(join(root, "example.com", "alice")), "Return-Path: <s@example.org>\nX-Original-To: Alice@Example.COM\nDelivered-To: Alice@Example.COM\n" + lf(message).toString("latin1"));
  assert.match(await only(join(root, "example.com", "bob")), /^Return-Path: <s@example.org>\nX-Original-To: bob@example.com\nDelivered-To: bob@example.com\nReceived:/);
});

test("X-Original-To is the recipient as received (sub-address, alias), Delivered-To the mailbox", async (t) => {
  const root = await tempDir(t);
  const req = {
    ...request(message, "s@example.org", ["alice@example.com", "bob@example.com"]),
    originalRecipients: new Map([["alice@example.com", "alice+news@example.com"], ["bob@example.com", "team@example.com"]]),
  };
  const out = await deliverAll(new LocalAgent({ maildirRoot: root }), req);
  assert.deepEqual(out.map((o) => o.status), ["delivered", "delivered"]);
  assert.match(await only(join(root, "example.com", "alice")), /^Return-Path: <s@example\.org>\nX-Original-To: alice\+news@example\.com\nDelivered-To: alice@example\.com\nReceived:/);
  assert.match(await only(join(root, "example.com", "bob")), /^Return-Path: <s@example\.org>\nX-Original-To: team@example\.com\nDelivered-To: bob@example\.com\n/);
});

test("a mailbox that no longer exists bounces 5.1.1 and gets no Maildir; the others are delivered", async (t) => {
  const root = await tempDir(t);
  const mailboxExists = async (a: string) => a !== "gone@example.com";
  const out = await deliverAll(new LocalAgent({ maildirRoot: root, mailboxExists }), request(message, "s@x", ["gone@example.com", "here@example.com"]));
  assert.ok(out[0].status === "failed" && out[0].enhanced === "5.1.1" && /<gone@example\.com>: no such user here/.test(out[0].diagnostic), JSON.stringify(out[0]));
  assert.equal(out[1].status, "delivered");
  assert.deepEqual(await readdir(join(root, "example.com")), ["here"]);
});

test("the null reverse-path is Return-Path: <>", async (t) => {
  const root = await tempDir(t);
  const out = await deliverAll(new LocalAgent({ maildirRoot: root }), request(message, "", ["a@example.com"]));
  assert.equal(out[0].status, "delivered");
  assert.match(await only(join(root, "example.com", "a")), /^Return-Path: <>\n/);
});

test("path traversal and unusable addresses are refused with 5.1.3, the others delivered", async (t) => {
  const root = join(await tempDir(t), "mail");
  const bad = ["../x@example.com", "a/b@example.com", "..@example.com", ".@example.com", "x@..", "x@a/b", "noat", "x@", "@example.com", '"../.."@example.com', "a\\b@example.com", "a\u0000@example.com"];
  const out = await deliverAll(new LocalAgent({ maildirRoot: root }), request(message, "s@x", [...bad, "ok@example.com"]));
  for (let i = 0; i < bad.length; i++) {
    const o = out[i];
    assert.ok(o.status === "failed" && o.enhanced === "5.1.3", `${bad[i]} → ${JSON.stringify(o)}`);
  }
  assert.equal(out.at(-1)!.status, "delivered");
  assert.deepEqual(await readdir(root), ["example.com"]);
  assert.deepEqual(await readdir(join(root, "example.com")), ["ok"]);
});

test("maildirPathFor unquotes a quoted local part", () => {
  const r = maildirPathFor("/m", '"John.Doe"@Example.com');
  assert.deepEqual(r, { ok: true, path: "/m/example.com/john.doe" });
});

test("a message already delivered to this recipient is a loop (5.4.6); other recipients still get it", async (t) => {
  const root = await tempDir(t);
  const looping = Buffer.from("Delivered-To: alice@example.com\r\nSubject: again\r\n\r\nx\r\n");
  const out = await deliverAll(new LocalAgent({ maildirRoot: root }), request(looping, "s@x", ["ALICE@example.com", "bob@example.com"]));
  assert.ok(out[0].status === "failed" && out[0].enhanced === "5.4.6" && /loop/.test(out[0].diagnostic));
  assert.equal(out[1].status, "delivered");
});

test("too many Received fields is a loop (5.4.6)", async (t) => {
  const root = await tempDir(t);
  const hops = Buffer.from("Received: x\r\n".repeat(50) + "\r\nbody\r\n");
  const out = await deliverAll(new LocalAgent({ maildirRoot: root }), request(hops, "s@x", ["a@example.com"]));
  assert.ok(out[0].status === "failed" && out[0].enhanced === "5.4.6");
  const fewer = await deliverAll(new LocalAgent({ maildirRoot: root, maxReceived: 51 }), request(hops, "s@x", ["a@example.com"]));
  assert.equal(fewer[0].status, "delivered");
});

test("quotaFor applies per address; a full mailbox defers (4.2.2) by default, bounces (5.2.2) when asked", async (t) => {
  const root = await tempDir(t);
  // Room for exactly one copy (the Maildir file: three header lines + the message with LF).
  const one = Buffer.byteLength("Return-Path: <s@x>\nX-Original-To: small@example.com\nDelivered-To: small@example.com\n") + lf(message).length;
  const quotaFor = (a: string) => (a.startsWith("small@") ? one : undefined);
  const first = await deliverAll(new LocalAgent({ maildirRoot: root, quotaFor }), request(message, "s@x", ["small@example.com"]));
  assert.equal(first[0].status, "delivered", "exactly the quota fits");
  const out = await deliverAll(new LocalAgent({ maildirRoot: root, quotaFor }), request(message, "s@x", ["small@example.com", "big@example.com"]));
  assert.ok(out[0].status === "deferred" && out[0].enhanced === "4.2.2", JSON.stringify(out[0]));
  assert.equal(out[1].status, "delivered");
  const b = await deliverAll(new LocalAgent({ maildirRoot: root, quotaFor, quotaFull: "bounce" }), request(message, "s@x", ["small@example.com"]));
  assert.ok(b[0].status === "failed" && b[0].enhanced === "5.2.2");
});

test("a message larger than the whole quota bounces at once (5.2.3) whatever quotaFull says: it can never fit", async (t) => {
  const root = await tempDir(t);
  const quotaFor = () => 10;
  for (const quotaFull of ["defer", "bounce"] as const) {
    const out = await deliverAll(new LocalAgent({ maildirRoot: root, quotaFor, quotaFull }), request(message, "s@x", ["small@example.com"]));
    assert.ok(out[0].status === "failed" && out[0].enhanced === "5.2.3" && /exceed its whole quota of 10 bytes/.test(out[0].diagnostic), JSON.stringify(out[0]));
  }
  assert.deepEqual(await readdir(join(root, "example.com", "small", "new")), []);
  assert.deepEqual(await readdir(join(root, "example.com", "small", "tmp")), []);
});

test("an unreadable queued message defers every recipient (4.3.0)", async (t) => {
  const root = await tempDir(t);
  const req = { ...request(message, "s@x", ["a@example.com", "b@example.com"]), body: () => { throw new Error("ENOENT: gone"); } };
  const out = await deliverAll(new LocalAgent({ maildirRoot: root }), req);
  assert.deepEqual(out.map((o) => o.status === "deferred" && o.enhanced), ["4.3.0", "4.3.0"]);
});

test("a small message is read from the spool once for all its recipients; a large one is streamed again for each, and every copy is whole", async (t) => {
  const root = await tempDir(t);
  const agent = new LocalAgent({ maildirRoot: root });
  const recipients = ["a@example.com", "b@example.com", "c@example.com"];
  for (const [size, reads] of [[1000, 1], [300 * 1024, 1 + recipients.length]] as const) {
    const content = Buffer.from(`Subject: s${size}\r\n\r\n` + "0123456789abcd\r\n".repeat(Math.ceil(size / 16)));
    const req = request(content, "s@example.org", recipients, 4096);
    let opened = 0;
    const out = await deliverAll(agent, { ...req, body: () => (opened++, req.body()) });
    assert.deepEqual(out.map((o) => o.status), ["delivered", "delivered", "delivered"]);
    assert.equal(opened, reads, `${size} octets: spool reads`);
    for (const r of recipients) {
      const dir = join(root, "example.com", r.split("@")[0], "new");
      const names = (await readdir(dir)).sort();
      const text = await readFile(join(dir, names.at(-1)!), "latin1");
      assert.equal(text, `Return-Path: <s@example.org>\nX-Original-To: ${r}\nDelivered-To: ${r}\n` + lf(content).toString("latin1"));
    }
  }
});
