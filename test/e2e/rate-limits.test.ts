/**
 * Rate limits through a whole Petrel: real sockets from distinct loopback
 * addresses (127.0.0.0/8, taken out of `exempt` for the test), the replies
 * a client sees, and what is stored.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ALICE, withPetrel } from "./petrel.ts";
import { SmtpClient, expectCode, readSpool, within } from "./fixtures/robust-helpers.ts";

/** The per-client rates count loopback clients once `exempt` leaves it out. */
function rates(r: Record<string, unknown>): Record<string, unknown> {
  return { limits: { rates: { exempt: [], ...r } } };
}

const MESSAGE = "Subject: rates\r\n\r\nhello\r\n";

test("connection rate: the 3rd connection a minute from 127.0.0.21 gets 421 4.7.0 instead of the greeting and is closed; 127.0.0.22 is served", async () => {
  await withPetrel(rates({ mx: { connections: 2 } }), async (p) => {
    for (let i = 0; i < 2; i++) {
      const c = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.21" });
      assert.equal(c.greeting!.code, 220);
      await c.quit();
    }
    const refused = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.21" });
    assert.equal(refused.greeting!.text, "421 4.7.0 Error: too many connections from 127.0.0.21; try again later");
    assert.ok(await within(refused.closed, 2000), "the refused connection is closed");
    const other = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.22" });
    assert.equal(other.greeting!.code, 220);
    await other.quit();
    // The submission listeners are counted apart.
    const sub = await SmtpClient.connect(p.submission, { localAddress: "127.0.0.21" });
    assert.equal(sub.greeting!.code, 220);
    await sub.quit();
  });
});

test("message rate: the 3rd MAIL a minute from one client gets 450 4.7.1, over two connections; the messages before are stored", async () => {
  await withPetrel(rates({ mx: { messages: 2 } }), async (p) => {
    const a = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.23" });
    await a.ehlo();
    expectCode(await a.send("a@example.org", ["alice@example.test"], MESSAGE), 250);
    await a.quit();
    const b = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.23" });
    await b.ehlo();
    expectCode(await b.send("a@example.org", ["alice@example.test"], MESSAGE), 250);
    const third = await b.cmd("MAIL FROM:<a@example.org>");
    assert.equal(third.text, "450 4.7.1 Error: too much mail from 127.0.0.23; try again later");
    expectCode(await b.cmd("NOOP"), 250);
    await b.quit();
    assert.equal((await readSpool(p.server.spool)).length, 2);
  });
});

test("recipient rate: RCPTs over the rate get 450 4.7.1, the message goes to those accepted", async () => {
  await withPetrel(rates({ mx: { recipients: 2 } }), async (p) => {
    const c = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.24" });
    await c.ehlo();
    expectCode(await c.cmd("MAIL FROM:<a@example.org>"), 250);
    expectCode(await c.cmd("RCPT TO:<one@example.test>"), 250);
    expectCode(await c.cmd("RCPT TO:<two@example.test>"), 250);
    assert.equal((await c.cmd("RCPT TO:<three@example.test>")).text, "450 4.7.1 Error: too many recipients from 127.0.0.24; try again later");
    expectCode(await c.cmd("DATA"), 354);
    c.write(`${MESSAGE}.\r\n`);
    expectCode(await c.read(), 250);
    await c.quit();
    const [stored] = await readSpool(p.server.spool);
    assert.deepEqual(stored.envelope.recipients.map((r) => r.address), ["one@example.test", "two@example.test"]);
  });
});

test("user rate: a login's 3rd message within the window is refused whatever address it comes from (loopback exempt or not)", async () => {
  await withPetrel({ limits: { rates: { user: { messages: 2, window: "1h" } } } }, async (p) => {
    const send = async (from: string) => {
      const c = await SmtpClient.connect(p.submissions, { localAddress: from, tls: { rejectUnauthorized: false } });
      await c.ehlo();
      expectCode(await c.authPlain(ALICE.address, ALICE.password), 235);
      const r = await c.cmd(`MAIL FROM:<${ALICE.address}>`);
      if (r.code === 250) {
        expectCode(await c.cmd("RCPT TO:<bob@example.org>"), 250);
        expectCode(await c.cmd("DATA"), 354);
        c.write(`${MESSAGE}.\r\n`);
        expectCode(await c.read(), 250);
      }
      await c.quit();
      return r.text;
    };
    assert.match(await send("127.0.0.25"), /^250 /);
    assert.match(await send("127.0.0.26"), /^250 /);
    assert.equal(await send("127.0.0.27"), "450 4.7.1 Error: too much mail from alice@example.test; try again later");
    assert.equal((await readSpool(p.server.spool)).length, 2);
  });
});

test("exempt: loopback by default is never counted per client", async () => {
  await withPetrel({ limits: { rates: { mx: { connections: 1 } } } }, async (p) => {
    for (let i = 0; i < 3; i++) {
      const c = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.28" });
      assert.equal(c.greeting!.code, 220);
      await c.quit();
    }
  });
});
