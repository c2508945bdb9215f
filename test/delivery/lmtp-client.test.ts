import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { join } from "node:path";
import { LmtpAgent } from "../../src/delivery/lmtp-agent.ts";
import { ReplyParser } from "../../src/smtp/reply-parser.ts";
import { replyText } from "../../src/smtp/reply.ts";
import { startFakeLmtp, type FakeLmtpScript } from "./fake-lmtp.ts";
import { deliverAll, request, tempDir } from "./helpers.ts";

const message = Buffer.from("Subject: test\r\n\r\n.leading dot\r\n..two\r\n.\r\nünïcødé\r\nlast line without end", "utf8");
const sentBody = Buffer.concat([message, Buffer.from("\r\n")]);

async function withServer(t: { after(fn: () => Promise<void>): void }, script: FakeLmtpScript) {
  const server = await startFakeLmtp(script);
  t.after(() => server.close());
  const agent = new LmtpAgent({ target: { host: "127.0.0.1", port: server.port }, lhloName: "petrel.test", timeouts: { greeting: 2000, command: 2000, dataTerm: 2000 } });
  return { server, agent };
}

test("per-recipient RCPT replies (250/452/550) and one reply per accepted recipient after the dot", async (t) => {
  const { server, agent } = await withServer(t, {
    rcpt: (a) => (a.startsWith("busy") ? "452 4.2.2 <busy@x> Mailbox full" : a.startsWith("nobody") ? "550 5.1.1 <nobody@x> User doesn't exist: nobody@x" : "250 2.1.5 OK"),
    afterData: (acc) => acc.map((a) => (a.startsWith("later") ? "451 4.3.0 <later@x> Temporary internal error" : `250 2.0.0 <${a}> Saved`)),
  });
  const out = await deliverAll(agent, request(message, "s@example.org", ["ok@x", "busy@x", "nobody@x", "later@x"], 5, { body: "8BITMIME" }));
  assert.equal(out[0].status, "delivered");
  assert.ok(out[1].status === "deferred" && out[1].enhanced === "4.2.2" && /452 4\.2\.2 <busy@x> Mailbox full/.test(out[1].diagnostic));
  assert.ok(out[2].status === "failed" && out[2].enhanced === "5.1.1" && /User doesn't exist/.test(out[2].diagnostic) && out[2].remoteMta === `[127.0.0.1]:${server.port}`);
  assert.ok(out[3].status === "deferred" && out[3].enhanced === "4.3.0" && /Temporary internal error/.test(out[3].diagnostic));
  assert.deepEqual(server.commands, [
    "LHLO petrel.test",
    "MAIL FROM:<s@example.org> BODY=8BITMIME",
    "RCPT TO:<ok@x>", "RCPT TO:<busy@x>", "RCPT TO:<nobody@x>", "RCPT TO:<later@x>",
    "DATA", "QUIT",
  ]);
  assert.deepEqual(server.bodies, [sentBody], "dot-stuffing round-trips");
});

test("replies without an enhanced code get X.0.0; multi-line replies are joined", async (t) => {
  const { agent } = await withServer(t, {
    extensions: [],
    rcpt: (a) => (a === "a@x" ? "550-no such\r\n550 user here" : a === "b@x" ? "450 try later" : "250 ok"),
  });
  const out = await deliverAll(agent, request(message, "", ["a@x", "b@x"]));
  assert.ok(out[0].status === "failed" && out[0].enhanced === "5.0.0" && /550 no such user here/.test(out[0].diagnostic));
  assert.ok(out[1].status === "deferred" && out[1].enhanced === "4.0.0");
  const parse = (wire: string) => new ReplyParser().push(Buffer.from(wire))[0];
  assert.equal(parse("550 4.1.1 mismatched class\r\n").status, undefined);
  assert.equal(replyText(parse("250-2.0.0 a\r\n250 2.0.0 b\r\n")), "250 2.0.0 a b");
});

test("no accepted recipient: no DATA, QUIT; the null sender is MAIL FROM:<>", async (t) => {
  const { server, agent } = await withServer(t, { rcpt: () => "550 5.1.1 unknown" });
  const out = await deliverAll(agent, request(message, "", ["a@x", "b@x"]));
  assert.deepEqual(out.map((o) => o.status), ["failed", "failed"]);
  assert.deepEqual(server.commands, ["LHLO petrel.test", "MAIL FROM:<>", "RCPT TO:<a@x>", "RCPT TO:<b@x>", "QUIT"]);
});

test("MAIL FROM refused: every recipient gets that reply", async (t) => {
  const { agent } = await withServer(t, { mail: () => "553 5.1.8 bad sender" });
  const out = await deliverAll(agent, request(message, "bad@x", ["a@x", "b@x"]));
  assert.ok(out.every((o) => o.status === "failed" && o.enhanced === "5.1.8"));
});

test("a 4xx/5xx greeting applies to every recipient", async (t) => {
  const { agent } = await withServer(t, { greeting: "421 4.3.2 shutting down" });
  const out = await deliverAll(agent, request(message, "s@x", ["a@x", "b@x"]));
  assert.ok(out.every((o) => o.status === "deferred" && o.enhanced === "4.3.2"));
});

test("connection dropped after RCPT: every recipient deferred 4.4.2", async (t) => {
  const { agent } = await withServer(t, { dropAt: "DATA" });
  const out = await deliverAll(agent, request(message, "s@x", ["a@x", "b@x"]));
  for (const o of out) assert.ok(o.status === "deferred" && o.enhanced === "4.4.2" && /lost connection/.test(o.diagnostic), JSON.stringify(o));
});

test("connection dropped after the first post-data reply: first delivered, the rest deferred 4.4.2", async (t) => {
  const { agent } = await withServer(t, { dropAt: "DOT:1" });
  const out = await deliverAll(agent, request(message, "s@x", ["a@x", "b@x", "c@x"]));
  assert.equal(out[0].status, "delivered");
  assert.ok(out[1].status === "deferred" && out[1].enhanced === "4.4.2");
  assert.ok(out[2].status === "deferred" && out[2].enhanced === "4.4.2");
});

test("connection refused: every recipient deferred 4.4.1", async () => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  const agent = new LmtpAgent({ target: { host: "127.0.0.1", port }, lhloName: "p" });
  const out = await deliverAll(agent, request(message, "s@x", ["a@x", "b@x"]));
  for (const o of out) assert.ok(o.status === "deferred" && o.enhanced === "4.4.1" && /ECONNREFUSED/.test(o.diagnostic), JSON.stringify(o));
});

test("a server that never greets times out: deferred 4.4.2", async (t) => {
  const server = await startFakeLmtp({ silent: true });
  t.after(() => server.close());
  const agent = new LmtpAgent({ target: { host: "127.0.0.1", port: server.port }, lhloName: "p", timeouts: { greeting: 50 } });
  const out = await deliverAll(agent, request(message, "s@x", ["a@x"]));
  assert.ok(out[0].status === "deferred" && out[0].enhanced === "4.4.2" && /timed out while waiting for the greeting/.test(out[0].diagnostic));
});

test("UNIX-domain socket target", async (t) => {
  const path = join(await tempDir(t), "lmtp.sock");
  const server = await startFakeLmtp({}, path);
  t.after(() => server.close());
  const out = await deliverAll(new LmtpAgent({ target: { path }, lhloName: "p" }), request(message, "s@x", ["a@x"]));
  assert.equal(out[0].status, "delivered");
  assert.deepEqual(server.bodies, [sentBody]);
});

test("missing socket path: deferred 4.4.1", async (t) => {
  const path = join(await tempDir(t), "nothing.sock");
  const out = await deliverAll(new LmtpAgent({ target: { path }, lhloName: "p" }), request(message, "s@x", ["a@x"]));
  assert.ok(out[0].status === "deferred" && out[0].enhanced === "4.4.1");
});

test("SMTPUTF8 only when advertised; a UTF-8 recipient without it fails 5.6.7, ASCII ones still go", async (t) => {
  const a = await withServer(t, { extensions: ["8BITMIME"] });
  const out = await deliverAll(a.agent, request(message, "s@x", ["ü@x", "a@x"], 7, { smtputf8: true }));
  assert.ok(out[0].status === "failed" && out[0].enhanced === "5.6.7");
  assert.equal(out[1].status, "delivered");
  assert.equal(a.server.commands[1], "MAIL FROM:<s@x>");

  const b = await withServer(t, { extensions: ["SMTPUTF8", "SIZE 1000000"] });
  const req = request(message, "ś@x", ["ü@x"], 7, { smtputf8: true, body: "8BITMIME", size: 1234 });
  const out2 = await deliverAll(b.agent, req);
  assert.equal(out2[0].status, "delivered");
  assert.equal(b.server.commands[1], "MAIL FROM:<ś@x> SIZE=1234 SMTPUTF8");
  assert.equal(b.server.commands[2], "RCPT TO:<ü@x>");
});

test("a UTF-8 sender to a server without SMTPUTF8 fails every recipient 5.6.7", async (t) => {
  const { server, agent } = await withServer(t, { extensions: [] });
  const out = await deliverAll(agent, request(message, "ś@x", ["a@x"], 7, { smtputf8: true }));
  assert.ok(out[0].status === "failed" && out[0].enhanced === "5.6.7");
  assert.ok(!server.commands.some((c) => c.startsWith("MAIL")));
});

test("a large body with many dot lines streams through (back-pressure) intact", async (t) => {
  const { server, agent } = await withServer(t, {});
  const big = Buffer.from(("." + "x".repeat(70) + "\r\n").repeat(80000) + ".\r\n");
  const out = await deliverAll(agent, request(big, "s@x", ["a@x"], 65536));
  assert.equal(out[0].status, "delivered");
  assert.equal(server.bodies[0].length, big.length);
  assert.ok(server.bodies[0].equals(big));
});

test("a queued message that cannot be read: conversation abandoned without the final dot, deferred 4.3.0", async (t) => {
  const { server, agent } = await withServer(t, {});
  const { Readable } = await import("node:stream");
  const req = {
    ...request(message, "s@x", ["a@x"]),
    body: () => new Readable({ read() { this.push("Subject: x\r\n"); this.destroy(new Error("spool read error")); } }),
  };
  const out = await deliverAll(agent, req);
  assert.ok(out[0].status === "deferred" && out[0].enhanced === "4.3.0" && /spool read error/.test(out[0].diagnostic));
  assert.deepEqual(server.bodies, []);
  assert.ok(!server.commands.includes("QUIT"));
});
