/**
 * Every configured limit against a running server: connections, message and
 * header size, recipients, messages per connection, errors, command line
 * length, timeouts, and AUTH failures (per connection and per client IP).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startPetrel, ALICE, type TestPetrel } from "./petrel.ts";
import {
  SmtpClient, dataPayload, derivedMessage, expectCode, failAuth, listDir, queuedId, readSpool, within,
} from "./fixtures/robust-helpers.ts";

async function withPetrel(overrides: Record<string, unknown>, fn: (p: TestPetrel) => Promise<void>): Promise<void> {
  // The file spool: these tests look at its tmp/ directory for partial messages.
  const p = await startPetrel({ spool: { format: "files" }, ...overrides });
  try {
    await fn(p);
  } finally {
    SmtpClient.closeAll();
    await p.stop();
  }
}

/** A message of exactly `size` bytes of content (CRLF lines, no leading dots). */
function messageOfSize(size: number, subject = "sized"): Buffer {
  const head = `Subject: ${subject}\r\n\r\n`;
  const line = "x".repeat(76) + "\r\n";
  let body = "";
  while (head.length + body.length + line.length <= size) body += line;
  body += "y".repeat(Math.max(0, size - head.length - body.length - 2)) + "\r\n";
  return Buffer.from(head + body, "latin1").subarray(0, Math.max(size, head.length));
}

test("connectionsPerClient: 2 — the 3rd connection from 127.0.0.1 gets 421 4.7.0; a slot frees on QUIT", async () => {
  await withPetrel({ limits: { connectionsPerClient: 2 } }, async (p) => {
    const a = await SmtpClient.connect(p.mx);
    const b = await SmtpClient.connect(p.submission);
    const c = await SmtpClient.connect(p.mx);
    assert.match(c.greeting!.text, /^421 4\.7\.0 /);
    assert.ok(await within(c.closed, 2000), "refused connection is closed");
    // Another client address is not affected.
    const other = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.2" });
    assert.equal(other.greeting!.code, 220);
    await other.quit();
    await a.quit();
    await a.closed;
    // The freed slot is usable (the server releases it on close; allow it a moment).
    let d: SmtpClient | null = null;
    for (let i = 0; i < 50; i++) {
      d = await SmtpClient.connect(p.mx);
      if (d.greeting!.code === 220) break;
      d.close();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(d!.greeting!.code, 220);
    await d!.quit();
    await b.quit();
  });
});

test("connections: 2 — the 3rd connection (any client) gets 421 4.3.2", async () => {
  await withPetrel({ limits: { connections: 2 } }, async (p) => {
    const a = await SmtpClient.connect(p.mx);
    const b = await SmtpClient.connect(p.mx, { localAddress: "127.0.0.2" });
    const c = await SmtpClient.connect(p.submission, { localAddress: "127.0.0.3" });
    assert.equal(a.greeting!.code, 220);
    assert.equal(b.greeting!.code, 220);
    assert.match(c.greeting!.text, /^421 4\.3\.2 /);
    await a.quit();
    await b.quit();
  });
});

test("messageSize: 10KB — a 20 KB message gets 552 5.3.4, the session continues", async () => {
  await withPetrel({ limits: { messageSize: "10KB" } }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    const ehlo = await c.ehlo();
    assert.match(ehlo.text, /SIZE 10000\b/);
    // Declared too big: refused at MAIL.
    assert.match((await c.cmd("MAIL FROM:<a@example.org> SIZE=20000")).text, /^552 5\.3\.4 /);
    // Undeclared, too big in fact: refused after the data.
    const r = await c.send("a@example.org", ["postmaster@example.test"], messageOfSize(20_000));
    assert.match(r.text, /^552 5\.3\.4 /);
    const ok = await c.send("a@example.org", ["postmaster@example.test"], messageOfSize(5_000, "small"));
    const id = queuedId(ok);
    const stored = await readSpool(p.server.spool);
    assert.deepEqual(stored.map((m) => m.id), [id], "only the small message was stored");
    assert.deepEqual(await listDir(join(p.dataDir, "spool", "tmp")), [], "the refused message left nothing in tmp/");
    await c.quit();
  });
});

test("headerSize: 1KiB — a message with a 2 KiB header gets 552 5.3.4; the session continues", async () => {
  await withPetrel({ limits: { headerSize: "1KiB" } }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    let header = "Subject: big header\r\n";
    for (let i = 0; header.length < 2048; i++) header += `X-Filler-${i}: ${"h".repeat(60)}\r\n`;
    const r = await c.send("a@example.org", ["postmaster@example.test"], `${header}\r\nbody\r\n`);
    assert.match(r.text, /^552 5\.3\.4 /);
    queuedId(await c.send("a@example.org", ["postmaster@example.test"], "Subject: small\r\n\r\nbody\r\n"));
    assert.equal((await p.server.spool.list()).length, 1);
    await c.quit();
  });
});

test("recipients: 3 — the 4th RCPT gets 452 4.5.3 and the message still goes to the first 3", async () => {
  await withPetrel({ limits: { recipients: 3 } }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    expectCode(await c.cmd("MAIL FROM:<a@example.org>"), 250);
    for (const u of ["u1", "u2", "u3"]) expectCode(await c.cmd(`RCPT TO:<${u}@example.test>`), 250);
    assert.match((await c.cmd("RCPT TO:<u4@example.test>")).text, /^452 4\.5\.3 /);
    expectCode(await c.cmd("DATA"), 354);
    c.write(dataPayload("Subject: three\r\n\r\nhi\r\n"));
    const id = queuedId(await c.read());
    const env = await p.server.spool.readEnvelope(id);
    assert.deepEqual(env.recipients.map((r) => r.address), ["u1@example.test", "u2@example.test", "u3@example.test"]);
    await c.quit();
  });
});

test("messagesPerConnection: 2 — the 3rd MAIL gets 421 and the connection closes", async () => {
  await withPetrel({ limits: { messagesPerConnection: 2 } }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    queuedId(await c.send("a@example.org", ["postmaster@example.test"], derivedMessage(1, 1)));
    queuedId(await c.send("a@example.org", ["postmaster@example.test"], derivedMessage(1, 2)));
    const r = await c.cmd("MAIL FROM:<a@example.org>");
    assert.equal(r.code, 421);
    assert.match(r.text, /^421 4\.7\.0 /);
    assert.ok(await within(c.closed, 2000));
  });
});

test("hardErrors: 5 — the 5th bad command gets its error, then 421 and close", async () => {
  await withPetrel({ limits: { hardErrors: 5 } }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    for (let i = 0; i < 4; i++) assert.equal((await c.cmd(`BOGUS${i}`)).code, 500);
    assert.equal((await c.cmd("BOGUS4")).code, 500);
    const r = await c.read();
    assert.match(r.text, /^421 4\.7\.0 /);
    assert.ok(await within(c.closed, 2000));
  });
});

test("commandLine: an overlong command gets 500 5.5.6 and the session continues", async () => {
  await withPetrel({ limits: { commandLine: 512 } }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    assert.match((await c.cmd(`NOOP ${"a".repeat(600)}`)).text, /^500 5\.5\.6 /);
    // Longer than one TCP read and than the limit many times over: still one error.
    assert.match((await c.cmd(`MAIL FROM:<${"b".repeat(200_000)}@example.org>`)).text, /^500 5\.5\.6 /);
    expectCode(await c.cmd("NOOP"), 250);
    queuedId(await c.send("a@example.org", ["postmaster@example.test"], "Subject: after\r\n\r\nok\r\n"));
    await c.quit();
  });
});

test("commandTimeout: 1 s — an idle client gets 421 4.4.2 within ~1–2 s", async () => {
  await withPetrel({ limits: { commandTimeout: 1 } }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    const started = Date.now();
    const r = await c.read();
    const elapsed = Date.now() - started;
    assert.match(r.text, /^421 4\.4\.2 /);
    assert.ok(elapsed >= 900 && elapsed < 2500, `timed out after ${elapsed} ms`);
    assert.ok(await within(c.closed, 2000));
  });
});

test("dataTimeout: 1 s — a client that stops mid-DATA gets 421 4.4.2 and nothing is stored", async () => {
  await withPetrel({ limits: { dataTimeout: 1 } }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    expectCode(await c.cmd("MAIL FROM:<a@example.org>"), 250);
    expectCode(await c.cmd("RCPT TO:<postmaster@example.test>"), 250);
    expectCode(await c.cmd("DATA"), 354);
    c.write("Subject: stalled\r\n\r\npart");
    const r = await c.read();
    assert.match(r.text, /^421 4\.4\.2 /);
    assert.ok(await within(c.closed, 2000));
    assert.deepEqual(await p.server.spool.list(), []);
    for (let i = 0; i < 50 && (await listDir(join(p.dataDir, "spool", "tmp"))).length > 0; i++) {
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.deepEqual(await listDir(join(p.dataDir, "spool", "tmp")), [], "the partial message is removed");
  });
});


test("authFailuresPerConnection: 2, authFailuresPerClient: 3 — disconnect after 2, then the IP is banned with 421 4.7.0", async () => {
  await withPetrel({ limits: { authFailuresPerConnection: 2, authFailuresPerClient: 3 } }, async (p) => {
    // Connection 1 (STARTTLS on submission): two failures, then 421 and close.
    const c1 = await SmtpClient.connect(p.submission);
    await c1.ehlo();
    await c1.startTls();
    await c1.ehlo();
    await failAuth(c1);
    const second = await c1.authPlain(ALICE.address, "still wrong");
    assert.match(second.text, /^535 5\.7\.8 /);
    assert.match((await c1.read()).text, /^421 4\.7\.0 /);
    assert.ok(await within(c1.closed, 2000), "disconnected after 2 failures");

    // Connection 2 (implicit TLS): the 3rd failure from this IP bans it.
    const c2 = await SmtpClient.connect(p.submissions, { tls: true });
    await c2.ehlo();
    await failAuth(c2);
    assert.match((await c2.read()).text, /^421 4\.7\.0 /);
    assert.ok(await within(c2.closed, 2000));

    // Connection 3 is refused at once, on any listener, even with the right password.
    const c3 = await SmtpClient.connect(p.mx);
    assert.match(c3.greeting!.text, /^421 4\.7\.0 .*authentication/i);
    const c4 = await SmtpClient.connect(p.submissions, { tls: true, greeting: true }).catch(() => null);
    assert.ok(c4 === null || c4.greeting!.code === 421, "banned on the implicit TLS listener too");
    c4?.close();

    // Another IP is not banned, and the right password works there.
    const ok = await SmtpClient.connect(p.submissions, { tls: true, localAddress: "127.0.0.2" });
    await ok.ehlo();
    assert.match((await ok.authPlain(ALICE.address, ALICE.password)).text, /^235 /);
    queuedId(await ok.send(ALICE.address, ["bob@example.org"], "Subject: relayed\r\n\r\nhi\r\n"));
    await ok.quit();
  });
});

test("AUTH is not offered, and refused, before TLS on submission", async () => {
  await withPetrel({}, async (p) => {
    const c = await SmtpClient.connect(p.submission);
    const ehlo = await c.ehlo();
    assert.doesNotMatch(ehlo.text, /AUTH/);
    assert.match((await c.authPlain(ALICE.address, ALICE.password)).text, /^538 5\.7\.11 /);
    assert.match((await c.cmd("MAIL FROM:<alice@example.test>")).text, /^530 5\.7\.0 /);
    await c.quit();
  });
});
