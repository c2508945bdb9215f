/**
 * The remote agent over reused connections, against a real Petrel: its
 * RFC 9422 LIMITS (MAILMAX, RCPTMAX) are honoured, a session Petrel ends
 * while idle is replaced, and — against a scripted server that announces no
 * LIMITS — a 421 on a reused session is retried at once on a fresh one.
 * In every case each message is delivered at the first attempt: nothing is
 * deferred.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import type * as net from "node:net";
import { Readable } from "node:stream";
import { startPetrel, type TestPetrel } from "../e2e/petrel.ts";
import { createResolver } from "../../src/dns/resolver.ts";
import { RemoteAgent } from "../../src/delivery/remote-agent.ts";
import { SmtpConnection, type ConnectOptions } from "../../src/client/smtp-connection.ts";
import type { DeliveryRequest } from "../../src/queue/ports.ts";
import { startFake } from "../client/fake-smtp.ts";
import { deliverAll } from "./helpers.ts";
import { until } from "../support/until.ts";

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function petrel(limits: Record<string, unknown>): Promise<TestPetrel> {
  const p = await startPetrel({ limits: { shutdownGrace: 2, ...limits } });
  cleanups.push(() => p.stop());
  return p;
}

/** An agent relaying to 127.0.0.1:port, keeping idle sessions, recording every session it opens. */
function agentFor(port: number): { agent: RemoteAgent; sessions: SmtpConnection[] } {
  const sessions: SmtpConnection[] = [];
  const resolver = createResolver({ servers: [] });
  const agent = new RemoteAgent({
    resolver, heloName: "client.test", port, tls: "none", reuseMs: 60_000, relay: { host: "127.0.0.1", port },
    connect: async (o: ConnectOptions) => {
      const c = await SmtpConnection.connect(o);
      sessions.push(c);
      return c;
    },
  });
  cleanups.push(async () => {
    await agent.close();
    resolver.close();
  });
  return { agent, sessions };
}

function request(to: string[], n = 0): DeliveryRequest {
  return {
    queueId: `Q${n}`,
    envelope: {
      mailFrom: "sender@far.test", recipients: to.map((address) => ({ address })), smtputf8: false, requireTls: false,
      client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "mx" }, receivedAt: Date.now(),
    },
    recipients: to,
    body: () => Readable.from([Buffer.from(`Subject: message ${n}\r\n\r\nhello\r\n`)]),
  };
}

test("MAILMAX: seven messages over reused sessions to a Petrel with messagesPerConnection 3 — all delivered, three sessions", async () => {
  const p = await petrel({ messagesPerConnection: 3 });
  const { agent, sessions } = agentFor(p.mx);
  for (let i = 0; i < 7; i++) {
    const [o] = await deliverAll(agent, request([`user${i}@example.test`], i));
    assert.equal(o.status, "delivered", `message ${i}: ${JSON.stringify(o)}`);
  }
  assert.equal(sessions.length, 3, "a new session before each MAILMAX is passed");
  assert.deepEqual(sessions.map((s) => s.capabilities.limits.mailMax), [3, 3, 3]);
  assert.equal((await p.server.spool.list()).length, 7);
});

test("RCPTMAX: five recipients to a Petrel with limits.recipients 2 — all delivered, in transactions of 2, 2 and 1", async () => {
  const p = await petrel({ recipients: 2 });
  const { agent, sessions } = agentFor(p.mx);
  const rcpts = ["a@example.test", "b@example.test", "c@example.test", "d@example.test", "e@example.test"];
  const out = await deliverAll(agent, request(rcpts));
  assert.deepEqual(out.map((o) => o.status), rcpts.map(() => "delivered"));
  assert.equal(sessions.length, 1);
  const envelopes = await Promise.all((await p.server.spool.list()).map((id) => p.server.spool.readEnvelope(id)));
  assert.deepEqual(envelopes.map((e) => e.recipients.map((r) => r.address)).sort(), [["a@example.test", "b@example.test"], ["c@example.test", "d@example.test"], ["e@example.test"]]);
});

test("a cached session Petrel ends while idle (421 4.4.2 at its timeout, then close) is dropped; the next message goes on a fresh one", async () => {
  // After DATA the server's idle timer is the data timeout until the next command arrives, so both are short.
  const p = await petrel({ commandTimeout: "1s", dataTimeout: "1s" });
  const { agent, sessions } = agentFor(p.mx);
  assert.equal((await deliverAll(agent, request(["a@example.test"], 1)))[0].status, "delivered");
  await until(() => sessions.length === 1 && !sessions[0].usable, "Petrel to end the idle session");
  assert.equal(sessions[0].failure?.reply?.code, 421, "the 421 Petrel sent while the session was idle");
  const [o] = await deliverAll(agent, request(["b@example.test"], 2));
  assert.equal(o.status, "delivered", JSON.stringify(o));
  assert.equal(sessions.length, 2);
});

test("no LIMITS announced, yet 421 to MAIL on a reused session: the message goes again at once on a fresh session, nothing deferred", async () => {
  const mails = new WeakMap<net.Socket, number>();
  const fake = await startFake({
    respond: (line, socket) => {
      if (!line.startsWith("MAIL")) return undefined;
      const n = (mails.get(socket) ?? 0) + 1;
      mails.set(socket, n);
      return n > 1 ? "421 4.7.0 one message per connection\r\n" : undefined;
    },
  });
  cleanups.push(() => fake.close());
  const { agent, sessions } = agentFor(fake.port);
  for (let i = 0; i < 3; i++) {
    const [o] = await deliverAll(agent, request([`u${i}@example.test`], i));
    assert.equal(o.status, "delivered", `message ${i}: ${JSON.stringify(o)}`);
  }
  assert.equal(sessions.length, 3);
  assert.equal(fake.data.length, 3);
});

test("a 421 that comes right after the 250 to the RSET before reuse (the server's idle timer fired as it answered) is not read as any reply: fresh session, delivered", async () => {
  const fake = await startFake({ respond: (line) => (line === "RSET" ? "250 2.0.0 Ok\r\n421 4.4.2 idle timeout, closing\r\n" : undefined) });
  cleanups.push(() => fake.close());
  const { agent, sessions } = agentFor(fake.port);
  assert.equal((await deliverAll(agent, request(["a@example.test"], 1)))[0].status, "delivered");
  const [o] = await deliverAll(agent, request(["b@example.test"], 2));
  assert.equal(o.status, "delivered", JSON.stringify(o));
  assert.equal(sessions.length, 2);
  assert.equal(fake.data.length, 2);
  assert.equal(sessions[0].failure?.reply?.code, 421, "the first session ended with the server's 421");
});
