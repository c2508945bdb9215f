/**
 * DNS blocklists through a whole Petrel: a DNS server on loopback serves
 * 127.0.0.2 for the "listed" loopback clients, and Petrel's own resolver
 * asks it (dns.servers); clients connect from distinct loopback addresses.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { withPetrel } from "./petrel.ts";
import { SmtpClient, expectCode, readSpool, within } from "./fixtures/robust-helpers.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";

const V6_LOOPBACK = `1${".0".repeat(31)}`;
let dns: TestDnsServer;

before(async () => {
  dns = await startDnsServer({
    "bl.test": { SOA: { minimum: 60 } },
    "wl.test": { SOA: { minimum: 60 } },
    "31.0.0.127.bl.test": { A: ["127.0.0.2"] },
    "33.0.0.127.bl.test": { A: ["127.0.0.2"] },
    "33.0.0.127.wl.test": { A: ["127.0.10.2"] },
    "34.0.0.127.bl.test": { A: ["127.0.0.10"] },
    [`${V6_LOOPBACK}.bl.test`]: { A: ["127.0.0.2"] },
  });
});

after(async () => {
  await dns.close();
});

/** Petrel's resolver asks the test's DNS server; loopback clients are looked up once `exempt` leaves it out. */
function lists(dnsbl: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { dns: { servers: [dns.server] }, dnsbl: { sites: ["bl.test"], exempt: [], ...dnsbl }, ...extra };
}

const MESSAGE = "Subject: dnsbl\r\n\r\nhello\r\n";

test("rejectAt rcpt (the default): a listed client gets 554 5.7.1 naming the list at each RCPT; a clean one delivers", async () => {
  await withPetrel(lists({}), async (p) => {
    const listed = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.31" });
    assert.equal(listed.greeting!.code, 220);
    await listed.ehlo();
    expectCode(await listed.cmd("MAIL FROM:<a@example.org>"), 250);
    assert.equal((await listed.cmd("RCPT TO:<alice@example.test>")).text, "554 5.7.1 Service unavailable; client [127.0.0.31] blocked using bl.test");
    assert.equal((await listed.cmd("RCPT TO:<postmaster@example.test>")).code, 554);
    assert.equal((await listed.cmd("DATA")).code, 503, "no valid recipients");
    await listed.quit();

    const clean = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.32" });
    await clean.ehlo();
    expectCode(await clean.send("a@example.org", ["alice@example.test"], MESSAGE), 250);
    await clean.quit();
    const stored = await readSpool(p.server.spool);
    assert.equal(stored.length, 1);
    assert.equal(stored[0].envelope.client.address, "127.0.0.32");
    assert.ok(dns.queries.some((q) => q.name === "31.0.0.127.bl.test"), "asked with the reversed address");
  });
});

test("rejectAt connect: a listed client gets 554 5.7.1 instead of the greeting", async () => {
  await withPetrel(lists({ rejectAt: "connect" }), async (p) => {
    const listed = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.31" });
    assert.equal(listed.greeting!.text, "554 5.7.1 Service unavailable; client [127.0.0.31] blocked using bl.test");
    const clean = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.32" });
    assert.equal(clean.greeting!.code, 220);
    await clean.quit();
    // Submission clients are not looked up (roles: [mx]).
    const sub = await SmtpClient.connect(p.submission, { localAddress: "127.0.0.31" });
    assert.equal(sub.greeting!.code, 220);
    await sub.quit();
    assert.ok(await within(listed.closed, 5000));
  });
});

test("weights, an allowlist and an answer filter decide together", async () => {
  await withPetrel(lists({ rejectAt: "connect", sites: ["bl.test=127.0.0.[2..3]*2", "wl.test*-5"], threshold: 2 }), async (p) => {
    const allowlisted = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.33" });
    assert.equal(allowlisted.greeting!.code, 220, "on bl.test and wl.test: 2 - 5");
    await allowlisted.quit();
    const filtered = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.34" });
    assert.equal(filtered.greeting!.code, 220, "127.0.0.10 is not in the filter");
    await filtered.quit();
    const listed = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.31" });
    assert.equal(listed.greeting!.code, 554);
  });
});

test("IPv6: a client on ::1 is looked up by nibbles and refused", async () => {
  const listeners = [{ address: "::1", port: 0, role: "mx" }, { address: "127.0.0.1", port: 0, role: "submission" }];
  await withPetrel(lists({ rejectAt: "connect" }, { listeners }), async (p) => {
    const mx6 = p.server.listeners.find((l) => l.role === "mx" && l.address === "::1")!;
    const c = await SmtpClient.connect(mx6.port, { host: "::1" });
    assert.equal(c.greeting!.text, "554 5.7.1 Service unavailable; client [::1] blocked using bl.test");
  });
});

test("a list that does not answer never blocks: after dnsbl.timeout the client is served (fail open)", async () => {
  dns.setBehaviour("35.0.0.127.bl.test", "drop");
  try {
    await withPetrel(lists({ rejectAt: "connect", timeout: "300ms" }), async (p) => {
      const c = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.35" });
      assert.equal(c.greeting!.code, 220);
      await c.ehlo();
      expectCode(await c.send("a@example.org", ["alice@example.test"], MESSAGE), 250);
      await c.quit();
    });
  } finally {
    dns.setBehaviour("35.0.0.127.bl.test", undefined);
  }
});

test("exempt clients are never looked up (loopback by default)", async () => {
  await withPetrel({ dns: { servers: [dns.server] }, dnsbl: { sites: ["bl.test"], rejectAt: "connect" } }, async (p) => {
    const asked = dns.queries.length;
    const c = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.31" });
    assert.equal(c.greeting!.code, 220);
    await c.quit();
    assert.equal(dns.queries.length, asked);
  });
});
