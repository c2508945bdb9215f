/**
 * A filter that is down, silent, or too slow: the check applies the
 * milter's defaultAction (Postfix's milter_default_action) — "tempfail"
 * answers 451 4.7.1 at that stage and every later one of the connection, so
 * the client keeps the message and retries; "accept" goes on without the
 * filter — and logs why. Timeouts are set short here; nothing waits for a
 * default timeout.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { milterCheck, type MilterSettings } from "../../../src/policy/milter/milter-check.ts";
import { parseServiceAddress } from "../../../src/mail/service-address.ts";
import { startScenarioMilter, type RunningMilter } from "../../support/milter-peers.ts";
import { capturingLogger, converse, type Conversation } from "./drive.ts";

const TEMPFAIL = { action: "tempfail", reply: { code: 451, status: "4.7.1", lines: ["Service unavailable - try again later"] } };
const CONTENT = "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello.\r\n";
const ONE: Conversation = { transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content: CONTENT }] };

let slow: RunningMilter;
const servers: net.Server[] = [];

before(async () => {
  slow = await startScenarioMilter({ env: { SLOW_WAIT: "3" } });
}, { timeout: 60_000 });

after(async () => {
  for (const s of servers) s.close();
  await slow?.stop();
});

function check(address: string, extra: Partial<MilterSettings>) {
  const { log, lines } = capturingLogger();
  const c = milterCheck(
    {
      name: "filter", address: parseServiceAddress(address)!, connectTimeout: 2000, commandTimeout: 300,
      endOfMessageTimeout: 500, defaultAction: "tempfail", ...extra,
    },
    { hostname: "mx.example.net", headerSizeLimit: 1024 * 1024, log },
  );
  return { check: c, lines };
}

/** A port where nothing listens: bound, then closed. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A TCP server that behaves badly: accepts and then `then` (reads and never answers, or hangs up). */
async function badServer(then: "silent" | "hang-up"): Promise<string> {
  const s = net.createServer((socket) => {
    if (then === "hang-up") socket.destroy();
    else socket.resume();
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return `inet:127.0.0.1:${(s.address() as net.AddressInfo).port}`;
}

test("nothing listening, defaultAction tempfail: 451 4.7.1 from connect on, for every stage; the reason is logged", async () => {
  const address = `inet:127.0.0.1:${await deadPort()}`;
  const { check: c, lines } = check(address, {});
  const session = await c.open({ address: "127.0.0.1", port: 40000, localAddress: "127.0.0.1", localPort: 25, role: "mx", tls: null });
  assert.deepEqual((await session.connect?.())?.verdict, TEMPFAIL);
  const facts = { client: { address: "127.0.0.1", port: 40000, localAddress: "127.0.0.1", localPort: 25, role: "mx" as const, tls: null }, helo: "c.example", esmtp: true, tls: null, authUser: null };
  assert.deepEqual((await session.helo?.(facts, "c.example"))?.verdict, TEMPFAIL);
  assert.deepEqual((await session.mail?.(facts, { localPart: "a", domain: "example.org" }, { smtputf8: false, requireTls: false }))?.verdict, TEMPFAIL);
  await session.close?.();
  const warn = lines().find((l) => l.level === 40);
  assert.ok(warn, "a warning is logged");
  assert.equal(warn.check, "milter:filter");
  assert.equal(warn.stage, "connect");
  assert.match(String(warn.err), /ECONNREFUSED/);
  assert.equal(warn.defaultAction, "tempfail");
});

test("nothing listening, defaultAction accept: every stage goes on without the filter; the reason is logged", async () => {
  const { check: c, lines } = check(`inet:127.0.0.1:${await deadPort()}`, { defaultAction: "accept" });
  const out = await converse(c, ONE);
  assert.equal(out.connect, undefined);
  assert.equal(out.helo, undefined);
  assert.deepEqual(out.transactions, [{ mail: undefined, rcpt: [undefined], endOfData: undefined }]);
  assert.match(String(lines().find((l) => l.level === 40)?.err), /ECONNREFUSED/);
});

test("a unix socket where nothing listens is the same as a refused TCP connection", async () => {
  const { check: c } = check("unix:/nonexistent/petrel-test/milter.sock", {});
  assert.deepEqual((await converse(c, ONE)).connect?.verdict, TEMPFAIL);
});

test("a filter that accepts the connection and never answers: the negotiation times out (commandTimeout), defaultAction applies", async () => {
  const address = await badServer("silent");
  const started = Date.now();
  const { check: c, lines } = check(address, {});
  const tempfail = await converse(c, ONE);
  assert.deepEqual(tempfail.connect?.verdict, TEMPFAIL);
  assert.ok(Date.now() - started < 10_000, "bounded by the 300 ms command timeout, not a default one");
  assert.match(String(lines().find((l) => l.level === 40)?.err), /no answer within 300 ms/);

  const accept = await converse(check(address, { defaultAction: "accept" }).check, ONE);
  assert.deepEqual(accept.transactions, [{ mail: undefined, rcpt: [undefined], endOfData: undefined }]);
});

test("a filter that hangs up at once: defaultAction applies", async () => {
  const address = await badServer("hang-up");
  const { check: c, lines } = check(address, {});
  assert.deepEqual((await converse(c, ONE)).connect?.verdict, TEMPFAIL);
  assert.ok(lines().some((l) => l.level === 40 && l.stage === "connect"));
});

test("a filter too slow at end of message (endOfMessageTimeout): 451 at end of data with tempfail, accepted with accept", async () => {
  const slowOne: Conversation = {
    transactions: [
      { from: "alice@example.org", to: ["slow@example.net"], content: CONTENT },
      { from: "alice@example.org", to: ["bob@example.net"], content: CONTENT },
    ],
  };
  const { check: c, lines } = check(slow.address, { commandTimeout: 5000 });
  const out = await converse(c, slowOne);
  assert.equal(out.connect, undefined);
  assert.deepEqual(out.transactions[0].rcpt, [undefined]);
  assert.deepEqual(out.transactions[0].endOfData?.verdict, TEMPFAIL);
  // The filter is gone for this connection: the next transaction is deferred at MAIL, not lost.
  assert.deepEqual(out.transactions[1].mail?.verdict, TEMPFAIL);
  const warn = lines().find((l) => l.level === 40);
  assert.equal(warn?.stage, "end of message");
  assert.match(String(warn?.err), /no answer within 500 ms/);

  const accepted = await converse(check(slow.address, { commandTimeout: 5000, defaultAction: "accept" }).check, slowOne);
  assert.deepEqual(accepted.transactions.map((t) => t.endOfData), [undefined, undefined]);
});
