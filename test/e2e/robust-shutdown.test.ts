/**
 * Graceful shutdown: a message in flight is allowed to finish (250, then
 * 421 4.3.2), idle sessions get 421 at once, new connections are refused,
 * and a transaction stuck past limits.shutdownGrace is cut off without
 * leaving anything partial in the spool.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { join } from "node:path";
import { once } from "node:events";
import { startPetrel } from "./petrel.ts";
import {
  SmtpClient, dataPayload, derivedMessage, expectCode, listDir, queuedId, readSpool, readSpoolDir,
  servePetrel, splitReceived, tempDir, whereabouts, within, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";

async function openData(c: SmtpClient): Promise<void> {
  await c.ehlo();
  expectCode(await c.cmd("MAIL FROM:<sender@example.org>"), 250);
  expectCode(await c.cmd("RCPT TO:<postmaster@example.test>"), 250);
  expectCode(await c.cmd("DATA"), 354);
}

/** Does a new TCP connection to `port` get refused (or closed without a greeting)? */
async function refused(port: number): Promise<boolean> {
  const s = connect({ host: "127.0.0.1", port });
  let data = "";
  s.setEncoding("latin1");
  s.on("data", (d: string) => (data += d));
  const result = await Promise.race([
    once(s, "error").then(() => "error"),
    once(s, "close").then(() => "close"),
  ]);
  s.destroy();
  return result === "error" || !data.startsWith("220");
}

test("server.close(): DATA in flight finishes with 250 then 421 4.3.2; idle session gets 421; new connections refused", async () => {
  const p = await startPetrel({ spool: { format: "files" } });
  let closing: Promise<void> | null = null;
  try {
    const busy = await SmtpClient.connect(p.mx);
    await openData(busy);
    const message = derivedMessage(1, 1);
    const payload = dataPayload(message);
    busy.write(payload.subarray(0, 2000));
    const idle = await SmtpClient.connect(p.mx);
    await idle.ehlo();
    // The spool file is opened before the 354: the message is in flight.
    assert.equal((await listDir(join(p.dataDir, "spool", "tmp"))).length, 1);

    closing = p.server.close();
    const idleReply = await idle.read();
    assert.equal(idleReply.code, 421);
    assert.match(idleReply.text, /^421 4\.3\.2 /);
    assert.ok(await within(idle.closed, 2000), "idle session is closed");
    assert.ok(await refused(p.mx), "a new connection after close is refused");

    busy.write(payload.subarray(2000));
    const done = await busy.read();
    const id = queuedId(done);
    const bye = await busy.read();
    assert.match(bye.text, /^421 4\.3\.2 /);
    assert.ok(await within(busy.closed, 2000), "busy session is closed after its 421");
    await closing;

    const stored = await readSpoolDir(join(p.dataDir, "spool"));
    assert.deepEqual(stored.map((m) => m.id), [id]);
    assert.ok(splitReceived(stored[0].body).content.equals(message));
  } finally {
    SmtpClient.closeAll();
    await (closing ?? Promise.resolve());
    await p.stop();
  }
});

test("shutdownGrace: 1 s — a stuck DATA is cut off with 421 and nothing partial is stored", async () => {
  const p = await startPetrel({ spool: { format: "files" }, limits: { shutdownGrace: 1 } });
  try {
    const ok = await SmtpClient.connect(p.mx);
    await ok.ehlo();
    const kept = queuedId(await ok.send("a@example.org", ["postmaster@example.test"], derivedMessage(2, 1)));
    await ok.quit();

    const stuck = await SmtpClient.connect(p.mx);
    await openData(stuck);
    stuck.write(dataPayload(derivedMessage(2, 2)).subarray(0, 3000));
    assert.equal((await listDir(join(p.dataDir, "spool", "tmp"))).length, 1);

    const started = Date.now();
    const closing = p.server.close();
    assert.ok(await within(closing, 5000), "close() resolves after the grace period");
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 900 && elapsed < 4500, `closed after the 1 s grace (${elapsed} ms)`);
    const r = await stuck.readOrClose();
    assert.match(r?.text ?? "(closed without a reply)", /^421 4\.3\.2 /, "stuck client is told why");
    assert.ok(await within(stuck.closed, 3000), "stuck client is disconnected");

    assert.deepEqual(await listDir(join(p.dataDir, "spool", "tmp")), [], "no partial message left in tmp/");
    const stored = await readSpoolDir(join(p.dataDir, "spool"));
    assert.deepEqual(stored.map((m) => m.id), [kept]);
  } finally {
    SmtpClient.closeAll();
    await p.stop();
  }
});

test("SIGTERM to petrel serve: DATA in flight gets 250, then 421; idle gets 421; exit code 0", { timeout: 20_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const dataDir = join(dir, "data");
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test",
    workers: 1,
    dataDir,
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    spool: { format: "files" },
    log: { level: "info" },
  });
  let p: PetrelProcess | null = null;
  try {
    p = await servePetrel(configPath, 1);
    const port = p.port("mx");
    const busy = await SmtpClient.connect(port);
    await openData(busy);
    const message = derivedMessage(3, 1);
    const payload = dataPayload(message);
    busy.write(payload.subarray(0, 1500));
    const idle = await SmtpClient.connect(port);
    await idle.ehlo();
    assert.equal((await listDir(join(dataDir, "spool", "tmp"))).length, 1);

    p.kill("SIGTERM");
    const idleReply = await idle.read();
    assert.match(idleReply.text, /^421 4\.3\.2 /, "idle session told the service is shutting down");
    busy.write(payload.subarray(1500));
    const id = queuedId(await busy.read());
    assert.match((await busy.read()).text, /^421 4\.3\.2 /);
    const exit = await p.exited;
    p = null;
    assert.equal(exit.code, 0);

    // petrel serve also runs the queue: the message is in the spool or already in the Maildir.
    const found = await whereabouts(dataDir);
    assert.deepEqual([...found.keys()], [id]);
    assert.ok(found.get(id)!.every((c) => c.content.equals(message)));
  } finally {
    if (p) {
      p.kill("SIGKILL");
      await p.exited;
    }
    await cleanup();
  }
});

test("a message acknowledged before close() is readable from the running server's spool", async () => {
  const p = await startPetrel({ spool: { format: "files" } });
  try {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    const id = queuedId(await c.send("a@example.org", ["postmaster@example.test"], derivedMessage(4, 1)));
    const stored = await readSpool(p.server.spool);
    assert.deepEqual(stored.map((m) => m.id), [id]);
    await c.quit();
  } finally {
    SmtpClient.closeAll();
    await p.stop();
  }
});
