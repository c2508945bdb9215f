/**
 * PROXY protocol (HAProxy v1 and v2) in front of a running server: the
 * client address a trusted proxy reports is the one recorded in the
 * envelope, the Received field and the per-IP limits; an untrusted peer's
 * header is just a bad SMTP command; a malformed header closes the
 * connection.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import * as net from "node:net";
import { startPetrel, ALICE, type TestPetrel } from "./petrel.ts";
import { SmtpClient, queuedId, splitReceived, within } from "./fixtures/robust-helpers.ts";

const PROXIED = {
  proxyProtocol: { trusted: ["127.0.0.1"] },
  listeners: [
    { address: "127.0.0.1", port: 0, role: "mx", proxyProtocol: true },
    { address: "127.0.0.1", port: 0, role: "submission" },
    { address: "127.0.0.1", port: 0, role: "submissions", proxyProtocol: true },
  ],
};

async function withProxied(overrides: Record<string, unknown>, fn: (p: TestPetrel) => Promise<void>): Promise<void> {
  const p = await startPetrel({ ...PROXIED, ...overrides });
  try {
    await fn(p);
  } finally {
    SmtpClient.closeAll();
    await p.stop();
  }
}

function v1(src: string, srcPort = 5555, dst = "127.0.0.1", dstPort = 25): string {
  return `PROXY TCP4 ${src} ${dst} ${srcPort} ${dstPort}\r\n`;
}

/** A v2 PROXY header for TCP over IPv4. */
function v2(src: string, srcPort: number, dst = "127.0.0.1", dstPort = 25): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = Buffer.alloc(12);
  src.split(".").forEach((o, i) => (addr[i] = Number(o)));
  dst.split(".").forEach((o, i) => (addr[4 + i] = Number(o)));
  addr.writeUInt16BE(srcPort, 8);
  addr.writeUInt16BE(dstPort, 10);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(addr.length);
  return Buffer.concat([sig, Buffer.from([0x21, 0x11]), len, addr]);
}

async function sendOne(c: SmtpClient, p: TestPetrel): Promise<{ id: string; received: string; address: string; port: number }> {
  await c.ehlo("proxied.example.org");
  const id = queuedId(await c.send("a@example.org", ["postmaster@example.test"], "Subject: proxied\r\n\r\nhello\r\n"));
  await c.quit();
  const env = await p.server.spool.readEnvelope(id);
  const chunks: Buffer[] = [];
  for await (const b of p.server.spool.readBody(id)) chunks.push(b as Buffer);
  const { received } = splitReceived(Buffer.concat(chunks));
  return { id, received, address: env.client.address, port: env.client.port };
}

test("PROXY v1 from a trusted peer: envelope and Received show the original client", async () => {
  await withProxied({}, async (p) => {
    const c = await SmtpClient.connect(p.mx, { preamble: v1("203.0.113.7") });
    assert.equal(c.greeting!.code, 220);
    const m = await sendOne(c, p);
    assert.equal(m.address, "203.0.113.7");
    assert.equal(m.port, 5555);
    assert.match(m.received, /\[203\.0\.113\.7\]/);
    assert.doesNotMatch(m.received, /127\.0\.0\.1/);
  });
});

test("PROXY v1 header split across several TCP segments", async () => {
  await withProxied({}, async (p) => {
    const raw = net.connect({ host: "127.0.0.1", port: p.mx });
    await once(raw, "connect");
    raw.setNoDelay(true);
    const header = v1("198.51.100.20", 40000);
    let got = "";
    raw.setEncoding("latin1");
    raw.on("data", (d: string) => (got += d));
    for (const piece of [header.slice(0, 3), header.slice(3, 17), header.slice(17)]) {
      raw.write(piece);
      await new Promise((r) => setTimeout(r, 10));
    }
    for (let i = 0; i < 100 && !got.includes("\r\n"); i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(got, /^220 /);
    raw.write("EHLO x.example.org\r\n");
    for (let i = 0; i < 100 && !/\r\n250 /.test(got); i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(got, /250 /);
    raw.destroy();
  });
});

test("PROXY v2 (binary) from a trusted peer: envelope and Received show the original client", async () => {
  await withProxied({}, async (p) => {
    const c = await SmtpClient.connect(p.mx, { preamble: v2("192.0.2.44", 61000) });
    const m = await sendOne(c, p);
    assert.equal(m.address, "192.0.2.44");
    assert.equal(m.port, 61000);
    assert.match(m.received, /\[192\.0\.2\.44\]/);
  });
});

test("PROXY header + implicit TLS (submissions): AUTH and the stored client address", async () => {
  await withProxied({}, async (p) => {
    const c = await SmtpClient.connect(p.submissions, { preamble: v1("203.0.113.9", 4444, "127.0.0.1", 465), tls: true });
    assert.equal(c.greeting!.code, 220);
    await c.ehlo();
    assert.match((await c.authPlain(ALICE.address, ALICE.password)).text, /^235 /);
    const id = queuedId(await c.send(ALICE.address, ["bob@example.org"], "Subject: via proxy\r\n\r\nhi\r\n"));
    await c.quit();
    const env = await p.server.spool.readEnvelope(id);
    assert.equal(env.client.address, "203.0.113.9");
    assert.equal(env.client.authUser, ALICE.address);
    assert.ok(env.client.tls, "TLS recorded");
  });
});

test("an untrusted peer's PROXY header is an unknown SMTP command (500); its real address is recorded", async () => {
  await withProxied({}, async (p) => {
    const c = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.2" });
    assert.equal(c.greeting!.code, 220, "no PROXY header expected from 127.0.0.2: greeting at once");
    const r = await c.cmd(v1("203.0.113.7").trimEnd());
    assert.match(r.text, /^500 /);
    const m = await sendOne(c, p);
    assert.equal(m.address, "127.0.0.2");
    assert.match(m.received, /\[127\.0\.0\.2\]/);
  });
});

test("a malformed PROXY header from a trusted peer closes the connection without a greeting", async () => {
  await withProxied({}, async (p) => {
    for (const bad of ["PROXY TCP4 not-an-ip 127.0.0.1 1 25\r\n", "EHLO me\r\n", "PROXY TCP4 203.0.113.7 127.0.0.1 99999 25\r\n"]) {
      const c = await SmtpClient.connect(p.mx, { preamble: bad, greeting: false });
      const r = await c.readOrClose();
      assert.equal(r, null, `no reply to ${JSON.stringify(bad)}: ${r?.text}`);
      assert.ok(await within(c.closed, 2000), "closed");
    }
    // The listener still works.
    const ok = await SmtpClient.connect(p.mx, { preamble: v1("203.0.113.8") });
    assert.equal(ok.greeting!.code, 220);
    await ok.quit();
  });
});

test("per-client limits apply to the proxied address, not the proxy's", async () => {
  await withProxied({ limits: { connectionsPerClient: 1 } }, async (p) => {
    const a = await SmtpClient.connect(p.mx, { preamble: v1("203.0.113.1") });
    const b = await SmtpClient.connect(p.mx, { preamble: v1("203.0.113.2") });
    const c = await SmtpClient.connect(p.mx, { preamble: v1("203.0.113.1", 6000) });
    assert.equal(a.greeting!.code, 220);
    assert.equal(b.greeting!.code, 220, "another client behind the same proxy is admitted");
    assert.match(c.greeting!.text, /^421 4\.7\.0 /, "the same client twice is not");
    await a.quit();
    await b.quit();
  });
});

test("a listener without proxyProtocol ignores the trusted list: PROXY is a bad command", async () => {
  await withProxied({}, async (p) => {
    const c = await SmtpClient.connect(p.submission);
    assert.match((await c.cmd(v1("203.0.113.7").trimEnd())).text, /^500 /);
    await c.quit();
  });
});
