import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { startPetrel, type TestPetrel } from "../e2e/petrel.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { createResolver } from "../../src/dns/resolver.ts";
import { RemoteAgent } from "../../src/delivery/remote-agent.ts";
import { SmtpConnection, type ConnectOptions } from "../../src/client/smtp-connection.ts";
import type { DeliveryRequest } from "../../src/queue/ports.ts";
import type { Envelope } from "../../src/mail/envelope.ts";
import { deliverAll } from "./helpers.ts";

/** The remote agent against a real Petrel as the MX, found through a real DNS server on loopback. */

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function setup(): Promise<{ petrel: TestPetrel; dns: TestDnsServer; connects: ConnectOptions[]; agent: RemoteAgent }> {
  const petrel = await startPetrel({ limits: { shutdownGrace: 2 } });
  cleanups.push(() => petrel.stop());
  const dns = await startDnsServer({
    "example.test": { MX: [[10, "mx.example.test"]] },
    "mx.example.test": { A: ["127.0.0.1"] },
    "localhost": { MX: [[10, "mx.example.test"]] },
  });
  cleanups.push(() => dns.close());
  const resolver = createResolver({ servers: [dns.server] });
  cleanups.push(async () => resolver.close());
  const connects: ConnectOptions[] = [];
  const agent = new RemoteAgent({
    resolver, heloName: "client.test", port: petrel.mx, tls: "opportunistic", reuseMs: 10_000,
    connect: (o) => {
      connects.push(o);
      return SmtpConnection.connect(o);
    },
  });
  cleanups.push(() => agent.close());
  return { petrel, dns, connects, agent };
}

function request(to: string[], body = "Subject: t\r\n\r\nhello\r\n", env: Partial<Envelope> = {}): DeliveryRequest {
  return {
    queueId: "TESTQ",
    envelope: {
      mailFrom: "sender@far.test", recipients: to.map((address) => ({ address })), smtputf8: false, requireTls: false,
      client: { address: "127.0.0.1", port: 1, helo: "x", protocol: "ESMTP", role: "mx" }, receivedAt: Date.now(), ...env,
    },
    recipients: to,
    body: () => Readable.from([Buffer.from(body)]),
  };
}

test("two messages to one domain share one connection; all recipients go in one transaction", async () => {
  const { petrel, connects, agent } = await setup();
  const first = await deliverAll(agent, request(["a@example.test", "b@example.test"]));
  assert.deepEqual(first.map((o) => o.status), ["delivered", "delivered"]);
  const second = await deliverAll(agent, request(["c@example.test"]));
  assert.equal(second[0].status, "delivered");
  assert.equal(connects.length, 1, "the idle connection was reused");
  assert.equal(connects[0].tls, "opportunistic");
  assert.equal(connects[0].verifyCertificate, false, "opportunistic TLS is unverified (RFC 7435)");
  const ids = await petrel.server.spool.list();
  assert.equal(ids.length, 2, "two transactions");
  const env = await petrel.server.spool.readEnvelope(ids[0]);
  assert.deepEqual(env.recipients.map((r) => r.address), ["a@example.test", "b@example.test"]);
  assert.equal(env.client.protocol, "ESMTPS", "STARTTLS was used");
});

test("per-recipient verdicts: a refused recipient fails with the server's reply, the other is delivered", async () => {
  const { agent } = await setup();
  // At the test Petrel, localhost has no users but postmaster (RFC 5321 §4.5.1).
  const out = await deliverAll(agent, request(["postmaster@localhost", "nobody@localhost"]));
  assert.equal(out[0].status, "delivered");
  const refused = out[1];
  assert.ok(refused.status === "failed", JSON.stringify(refused));
  assert.equal(refused.enhanced, "5.1.1");
  assert.match(refused.diagnostic, /^550 5\.1\.1 <nobody@localhost>: Recipient address rejected/);
  assert.equal(refused.remoteMta, "mx.example.test");
});

test("a message that needs SMTPUTF8 to a server without it fails permanently with 5.6.7", async () => {
  const { petrel } = await setup();
  // Petrel offers SMTPUTF8; a fake capability view shows the agent's check without a second server.
  const fake = new RemoteAgent({
    resolver: createResolver({ servers: [] }), heloName: "c", port: petrel.mx, tls: "none", reuseMs: 0,
    relay: { host: "127.0.0.1", port: petrel.mx },
    connect: async (o) => {
      const c = await SmtpConnection.connect(o);
      Object.defineProperty(c, "capabilities", { value: { ...c.capabilities, smtputf8: false } });
      return c;
    },
  });
  const out = await deliverAll(fake, request(["jürgen@example.test"], "Subject: t\r\n\r\nhi\r\n", { smtputf8: true }));
  assert.equal(out[0].status, "failed");
  assert.ok(out[0].status === "failed" && out[0].enhanced === "5.6.7");
  await fake.close();
});
