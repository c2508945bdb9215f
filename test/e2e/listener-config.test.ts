/**
 * Listener and limit settings through the real `petrel serve`: a listener's
 * hidden EHLO keywords as a real client (Python's smtplib) and a raw socket
 * see them, and the configuration errors of limits.messageSize: 0 and an
 * unknown keyword (exit 78, key named, nothing started).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { LineClient, b64, runPy, type PyResult } from "./interop-helpers.ts";
import { runPetrel, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess } from "./fixtures/robust-helpers.ts";

async function serveFails(config: Record<string, unknown>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const { dir, cleanup } = await tempDir();
  try {
    const path = await writeConfig(dir, config);
    const p = runPetrel(["serve", "--config", path], { cwd: dir });
    const exit = await p.exited;
    return { code: exit.code, stderr: p.stderr(), stdout: p.stdout() };
  } finally {
    await cleanup();
  }
}

test("limits.messageSize: 0 → exit 78 naming the key and what to write instead; nothing started", async () => {
  const r = await serveFails({ limits: { messageSize: 0 } });
  assert.equal(r.code, 78);
  assert.match(r.stderr, /limits\.messageSize: got 0; expected at least 1 byte: Petrel has no "unlimited"/);
  assert.match(r.stderr, /"1GiB"/);
  assert.doesNotMatch(r.stdout, /listening/);
});

test("listeners[].hide with an unknown keyword → exit 78 naming its place", async () => {
  const r = await serveFails({ listeners: [{ address: "127.0.0.1", port: 0, role: "mx", hide: ["DSN", "ETRN"] }] });
  assert.equal(r.code, 78);
  assert.match(r.stderr, /listeners\[0\]\.hide\[1\]: got "ETRN"; expected one of the EHLO keywords/);
});

test("an mx listener with hide: [dsn, CHUNKING] as smtplib sees it; the listener beside it is unchanged", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let p: PetrelProcess | null = null;
  try {
    const config = await writeConfig(dir, {
      hostname: "mx.example.test",
      workers: 1,
      domains: ["example.test"],
      listeners: [
        { address: "127.0.0.1", port: 0, role: "mx", hide: ["dsn", "CHUNKING"] },
        { address: "127.0.0.1", port: 0, role: "mx" },
      ],
    });
    p = await servePetrel(config, 2);
    const [hidden, plain] = p.listening.map((l) => l.port);
    const session = (port: number) => runPy([
      { op: "connect", port, ssl: false, helo_name: "client.test" },
      { op: "ehlo", name: "client.test" },
      {
        op: "sendmail", from: "carol@sender.test", to: ["postmaster@example.test"], msg_b64: b64("Subject: x\r\n\r\nx\r\n"),
        rcpt_options: ["NOTIFY=SUCCESS,FAILURE"],
      },
      { op: "quit" },
    ]);
    const features = (r: PyResult[]) => Object.keys((r[1] as { value: { features: Record<string, string> } }).value.features).sort();

    const h = await session(hidden);
    assert.deepEqual(features(h), ["8bitmime", "enhancedstatuscodes", "limits", "pipelining", "size", "smtputf8", "starttls"]);
    const refused = h[2] as { ok: false; error: string; recipients: Record<string, [number, string]> };
    assert.equal(refused.error, "SMTPRecipientsRefused");
    assert.deepEqual(refused.recipients["postmaster@example.test"], [555, "5.5.4 unsupported parameter NOTIFY"]);

    const u = await session(plain);
    assert.deepEqual(features(u), ["8bitmime", "chunking", "dsn", "enhancedstatuscodes", "limits", "pipelining", "size", "smtputf8", "starttls"]);
    assert.equal(u[2].ok, true, JSON.stringify(u[2]));

    // BDAT where CHUNKING is hidden: 521 and the connection is closed before the chunk is read.
    const c = await LineClient.connect(hidden);
    try {
      await c.read();
      await c.cmd("EHLO raw.test");
      await c.cmd("MAIL FROM:<carol@sender.test>");
      await c.cmd("RCPT TO:<postmaster@example.test>");
      c.write("BDAT 5 LAST\r\nhello");
      assert.deepEqual((await c.readUntilClosed()).map((r) => r.lines[0]), ["521 5.5.1 Error: command not implemented"]);
    } finally {
      c.destroy();
    }
    const exit = await stopPetrel(p);
    p = null;
    assert.equal(exit.code, 0);
  } finally {
    if (p) {
      p.kill("SIGKILL");
      await p.exited;
    }
    await cleanup();
  }
});
