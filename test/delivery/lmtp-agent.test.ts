/**
 * The LMTP agent's share of the one client: DSN parameters passed to an LMTP
 * server that offers DSN (and who reports success then), RFC 9422 LIMITS,
 * the connection cache with RSET before reuse, and an idle session the
 * server ends — against the scripted LMTP server.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { LmtpAgent } from "../../src/delivery/lmtp-agent.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { startFakeLmtp, type FakeLmtpScript } from "./fake-lmtp.ts";
import { deliverAll, request } from "./helpers.ts";
import { until } from "../support/until.ts";

const message = Buffer.from("Subject: t\r\n\r\nhello\r\n");

async function withServer(t: { after(fn: () => Promise<void>): void }, script: FakeLmtpScript, more: { reuseMs?: number; clock?: ManualClock } = {}) {
  const server = await startFakeLmtp(script);
  const agent = new LmtpAgent({
    target: { host: "127.0.0.1", port: server.port }, lhloName: "petrel.test", timeouts: { greeting: 5000, command: 5000, dataTerm: 5000 },
    ...(more.reuseMs !== undefined ? { reuseMs: more.reuseMs } : {}), ...(more.clock ? { timer: more.clock } : {}),
  });
  t.after(async () => {
    await agent.close();
    await server.close();
  });
  return { server, agent };
}

test("a server that offers DSN gets NOTIFY, ORCPT, RET and ENVID (xtext), and the success is its to report (passed)", async (t) => {
  const { server, agent } = await withServer(t, { extensions: ["PIPELINING", "ENHANCEDSTATUSCODES", "DSN"] });
  const req = request(message, "s@example.org", ["bob@x", "carol@x"], 7, {
    ret: "HDRS", envid: "id+1=x",
    recipients: [{ address: "bob@x", notify: ["SUCCESS", "FAILURE"], orcpt: "rfc822;Bob+x@X" }, { address: "carol@x" }],
  });
  const out = await deliverAll(agent, req);
  assert.deepEqual(out.map((o) => o.status === "delivered" && o.dsn), ["passed", "passed"]);
  assert.deepEqual(server.commands.slice(1, 4), [
    "MAIL FROM:<s@example.org> RET=HDRS ENVID=id+2B1+3Dx",
    "RCPT TO:<bob@x> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx@X",
    "RCPT TO:<carol@x>",
  ]);
});

test("a server without DSN gets no DSN parameters, and a success is final: we report it (delivered)", async (t) => {
  const { server, agent } = await withServer(t, {});
  const req = request(message, "s@example.org", ["bob@x"], 7, { ret: "FULL", envid: "e1", recipients: [{ address: "bob@x", notify: ["SUCCESS"] }] });
  const [o] = await deliverAll(agent, req);
  assert.ok(o.status === "delivered" && o.dsn === "final", JSON.stringify(o));
  assert.equal(o.remoteMta, `[127.0.0.1]:${server.port}`);
  assert.deepEqual(server.commands.slice(1, 3), ["MAIL FROM:<s@example.org>", "RCPT TO:<bob@x>"]);
});

test("LIMITS RCPTMAX=2: five recipients go in three transactions, every one delivered", async (t) => {
  const { server, agent } = await withServer(t, { extensions: ["PIPELINING", "ENHANCEDSTATUSCODES", "LIMITS RCPTMAX=2 MAILMAX=10"] });
  const rcpts = ["a@x", "b@x", "c@x", "d@x", "e@x"];
  const out = await deliverAll(agent, request(message, "s@x", rcpts));
  assert.deepEqual(out.map((o) => o.status), rcpts.map(() => "delivered"));
  const tx = server.commands.filter((c) => c.startsWith("MAIL") || c.startsWith("RCPT") || c === "DATA");
  assert.deepEqual(tx, [
    "MAIL FROM:<s@x>", "RCPT TO:<a@x>", "RCPT TO:<b@x>", "DATA",
    "MAIL FROM:<s@x>", "RCPT TO:<c@x>", "RCPT TO:<d@x>", "DATA",
    "MAIL FROM:<s@x>", "RCPT TO:<e@x>", "DATA",
  ]);
  assert.equal(server.bodies.length, 3);
  assert.equal(server.connections(), 1);
});

test("LIMITS MAILMAX=2 with RCPTMAX=1: a new session before the third transaction", async (t) => {
  const { server, agent } = await withServer(t, { extensions: ["PIPELINING", "LIMITS MAILMAX=2 RCPTMAX=1"] });
  const out = await deliverAll(agent, request(message, "s@x", ["a@x", "b@x", "c@x"]));
  assert.deepEqual(out.map((o) => o.status), ["delivered", "delivered", "delivered"]);
  assert.equal(server.connections(), 2);
  assert.equal(server.commands.filter((c) => c.startsWith("LHLO")).length, 2);
});

test("with reuse, the next delivery takes the cached session after RSET; the idle limit ends it with QUIT", async (t) => {
  const clock = new ManualClock();
  const { server, agent } = await withServer(t, {}, { reuseMs: 10_000, clock });
  assert.equal((await deliverAll(agent, request(message, "s@x", ["a@x"])))[0].status, "delivered");
  assert.equal((await deliverAll(agent, request(message, "s@x", ["b@x"])))[0].status, "delivered");
  assert.equal(server.connections(), 1);
  assert.deepEqual(server.commands.filter((c) => !c.startsWith("RCPT")), ["LHLO petrel.test", "MAIL FROM:<s@x>", "DATA", "RSET", "MAIL FROM:<s@x>", "DATA"]);
  clock.advance(10_000);
  await until(() => server.commands.at(-1) === "QUIT", "QUIT at the idle limit");
});

test("a session the server ends while idle (421) is never read as the RSET reply: the next delivery goes on a fresh session", async (t) => {
  const { server, agent } = await withServer(t, {}, { reuseMs: 60_000 });
  assert.equal((await deliverAll(agent, request(message, "s@x", ["a@x"])))[0].status, "delivered");
  server.say("421 4.4.2 idle too long\r\n");
  await until(() => server.open() === 0, "the client to drop the ended session");
  const [o] = await deliverAll(agent, request(message, "s@x", ["b@x"]));
  assert.equal(o.status, "delivered", JSON.stringify(o));
  assert.equal(server.connections(), 2);
  assert.ok(!server.commands.includes("RSET"), "no RSET went to the ended session");
});


for (const [what, rset] of [
  ["RSET answered with 421", "421 4.4.2 idle too long"],
  ["a 421 right after the 250 to RSET (the idle timer fired as it answered)", "250 2.0.0 OK\r\n421 4.4.2 idle too long"],
] as const) {
  test(`reuse: ${what} — dropped, the message goes on a fresh session, nothing deferred`, async (t) => {
    const { server, agent } = await withServer(t, { rset: () => rset }, { reuseMs: 60_000 });
    assert.equal((await deliverAll(agent, request(message, "s@x", ["a@x"])))[0].status, "delivered");
    const [o] = await deliverAll(agent, request(message, "s@x", ["b@x"]));
    assert.equal(o.status, "delivered", JSON.stringify(o));
    assert.equal(server.connections(), 2);
    assert.equal(server.bodies.length, 2);
  });
}

test("an alias or sub-address target carries its original's NOTIFY, and an ORCPT naming the address received when the sender gave none", async (t) => {
  const { server, agent } = await withServer(t, { extensions: ["PIPELINING", "DSN"] });
  const req = {
    ...request(message, "s@example.org", ["bob@x", "carol@x"], 7, {
      recipients: [{ address: "team@x", notify: ["SUCCESS"] }, { address: "carol+tag@x", notify: ["FAILURE"], orcpt: "rfc822;Carol+Tag@X" }],
    }),
    originalRecipients: new Map([["bob@x", "team@x"], ["carol@x", "carol+tag@x"]]),
  };
  const out = await deliverAll(agent, req);
  assert.deepEqual(out.map((o) => o.status === "delivered" && o.dsn), ["passed", "passed"]);
  assert.deepEqual(server.commands.filter((c) => c.startsWith("RCPT")), [
    "RCPT TO:<bob@x> NOTIFY=SUCCESS ORCPT=rfc822;team@x",
    "RCPT TO:<carol@x> NOTIFY=FAILURE ORCPT=rfc822;Carol+2BTag@X",
  ]);
});
