/**
 * `petrel status` against a running `petrel serve`: version, listeners with
 * their real ports, the queue (a message waiting for an LMTP server that
 * refuses), certificate expiry — in words and as JSON; "not running" (exit
 * 3) once it stops.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { SmtpClient, freePort, queuedId, runPetrel, servePetrel, stopPetrel, tempDir, writeConfig } from "./fixtures/robust-helpers.ts";
import { until } from "../support/until.ts";

const pkg = JSON.parse(await readFile(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { version: string };

async function status(configPath: string, json = false): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runPetrel(["status", "--config", configPath, ...(json ? ["--json"] : [])]);
  const exit = await p.exited;
  return { code: exit.code, stdout: p.stdout(), stderr: p.stderr() };
}

test("status of a running server, then of a stopped one", async () => {
  const { dir, cleanup } = await tempDir();
  const closedPort = await freePort();
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test",
    workers: 1,
    dataDir: `${dir}/data`,
    domains: ["example.test"],
    listeners: [
      { address: "127.0.0.1", port: 0, role: "mx" },
      { address: "127.0.0.1", port: 0, role: "submissions" },
    ],
    // Nothing listens there: mail for example.test waits in the queue.
    transport: [{ domains: ["example.test"], type: "lmtp", host: "127.0.0.1", port: closedPort }],
  });
  const p = await servePetrel(configPath, 2);
  try {
    const c = await SmtpClient.connect(p.port("mx"));
    await c.ehlo();
    const id = queuedId(await c.send("someone@elsewhere.test", ["postmaster@example.test"], "Subject: wait\r\n\r\nhello\r\n"));
    await c.quit();
    await until(async () => {
      const r = await status(configPath, true);
      return r.code === 0 && (JSON.parse(r.stdout) as { queue: { waiting: { deferred: number } } }).queue.waiting.deferred === 1;
    }, "the message to be deferred");

    const text = await status(configPath);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^Petrel ${pkg.version.replace(/\./g, "\\.")} is running as mx\\.example\\.test \\(pid ${p.pid}\\), up \\d+s since \\d{4}-`));
    assert.match(text.stdout, new RegExp(`127\\.0\\.0\\.1:${p.port("mx")} +mx\\n`));
    assert.match(text.stdout, new RegExp(`127\\.0\\.0\\.1:${p.port("submissions")} +submissions\\n`));
    assert.match(text.stdout, /queue: 1 message, oldest \d+s; recipients waiting: 0 queued, 0 being delivered, 1 deferred/);
    assert.match(text.stdout, /most waiting for: example\.test \(1\)/);
    assert.match(text.stdout, /mx\.example\.test, localhost, 127\.0\.0\.1.*: valid until \d{4}-.*\((36[45]) days left\) — .*self-signed\.crt/);

    const json = await status(configPath, true);
    const st = JSON.parse(json.stdout);
    assert.equal(st.running, true);
    assert.equal(st.version, pkg.version);
    assert.equal(st.pid, p.pid);
    assert.equal(st.dataDir, `${dir}/data`);
    assert.deepEqual(st.listeners, [
      { role: "mx", address: "127.0.0.1", port: p.port("mx") },
      { role: "submissions", address: "127.0.0.1", port: p.port("submissions") },
    ]);
    assert.equal(st.queue.messages, 1);
    assert.equal(st.queue.held, 0);
    assert.ok(st.uptimeSeconds >= 0 && st.uptimeSeconds < 600);
    assert.equal(st.certificates[0].daysLeft >= 364, true);

    const hold = runPetrel(["queue", "hold", id, "--config", configPath]);
    assert.equal((await hold.exited).code, 0, hold.stderr());
    assert.match((await status(configPath)).stdout, /queue: 1 message \(1 held\)/);
  } finally {
    SmtpClient.closeAll();
    await stopPetrel(p);
  }
  try {
    const stopped = await status(configPath);
    assert.equal(stopped.code, 3);
    assert.match(stopped.stderr, /Petrel is not running: nothing answers on .*control\.sock/);
    const stoppedJson = await status(configPath, true);
    assert.equal(stoppedJson.code, 3);
    assert.deepEqual(JSON.parse(stoppedJson.stdout), { running: false, dataDir: `${dir}/data` });
  } finally {
    await cleanup();
  }
});

test("status: a control socket that accepts but never answers is an error (1), a bad config 78", async () => {
  const { dir, cleanup } = await tempDir();
  const { mkdir } = await import("node:fs/promises");
  await mkdir(`${dir}/data`);
  const silent = net.createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(`${dir}/data/control.sock`, resolve));
  try {
    const bad = await status(await writeConfig(dir, { dataDir: `${dir}/data`, log: { level: "loud" } }, "bad.yaml"));
    assert.equal(bad.code, 78);
    assert.match(bad.stderr, /log\.level/);
    // The client waits 10 s for an answer; a hung server must not hang the command for ever.
    const hung = await status(await writeConfig(dir, { dataDir: `${dir}/data` }));
    assert.equal(hung.code, 1);
    assert.match(hung.stderr, /no answer from the running server/);
  } finally {
    silent.close();
    await cleanup();
  }
});
