/**
 * `petrel reload` against a running server: a new limit and a new route in
 * the file reach new connections and new deliveries, a connection in
 * progress keeps the limit it started with, a key that needs a restart is
 * named; a broken file is refused with the file, line and key, and the old
 * configuration stays in force. SIGHUP does the same for `petrel serve`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as net from "node:net";
import pino from "pino";
import { loadConfig } from "../../src/config/load.ts";
import { startMta } from "../../src/mta.ts";
import { reloadCommand } from "../../src/cli/reload-command.ts";
import { io, until } from "./fixtures/mta-helpers.ts";
import { SmtpClient, expectCode, servePetrel, stopPetrel, tempDir, writeConfig } from "./fixtures/robust-helpers.ts";

function yaml(dir: string, recipients: number, extra = ""): string {
  return [
    "hostname: mx.example.test",
    `dataDir: ${dir}`,
    "domains: [example.test, relay.test]",
    "listeners:",
    "  - { address: 127.0.0.1, port: 0, role: mx }",
    "admin: { enabled: false }",
    "limits:",
    `  recipients: ${recipients}`,
    "workers: 1",
    extra,
  ].join("\n");
}

async function rcpts(c: SmtpClient, n: number): Promise<number[]> {
  expectCode(await c.cmd("MAIL FROM:<s@far.test>"), 250);
  const codes: number[] = [];
  for (let i = 0; i < n; i++) codes.push((await c.cmd(`RCPT TO:<u${i}@relay.test>`)).code);
  await c.cmd("RSET");
  return codes;
}

test("reload: a new limit and a new route apply to new connections and deliveries; a broken file changes nothing", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-reload-"));
  const path = join(dir, "petrel.yaml");
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const lmtpPort = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  await writeFile(path, yaml(dir, 2));
  const mta = await startMta(await loadConfig(path), { log: pino({ level: "silent" }), errorSleep: 0, fsync: false, configPath: path });
  try {
    await mta.accounts.addAlias("@relay.test", "postmaster@relay.test");
    const mx = mta.smtp.listeners[0].port;
    const before = await SmtpClient.connect(mx);
    await before.ehlo();
    assert.deepEqual(await rcpts(before, 3), [250, 250, 452]);

    await writeFile(path, yaml(dir, 5, [
      "transport:",
      `  - { domains: [relay.test], type: lmtp, host: 127.0.0.1, port: ${lmtpPort} }`,
      "hostname: mx2.example.test",
    ].join("\n")).replace("hostname: mx.example.test\n", ""));
    const out = io();
    assert.equal(await reloadCommand(["--config", path], out.io), 0, out.err());
    assert.match(out.out(), /^reloaded; applied: certificates, limits, transport\n/);
    assert.match(out.out(), /\nchanged, but kept until a restart: hostname\n$/);

    // A new connection has the new limit; the one in progress keeps the old.
    const after = await SmtpClient.connect(mx);
    await after.ehlo();
    assert.deepEqual(await rcpts(after, 3), [250, 250, 250]);
    assert.deepEqual(await rcpts(before, 3), [250, 250, 452]);
    assert.match(after.greeting!.text, /^220 mx\.example\.test /);

    // The new route: relay.test now goes to the LMTP server (which is down: deferred there).
    const r = await after.send("s@far.test", ["someone@relay.test"], "Subject: routed\r\n\r\nx\r\n");
    const id = /queued as (\S+)/.exec(r.text)![1];
    const item = await until(async () => (await mta.queue.list()).find((m) => m.id === id && m.recipients[0].status === "deferred"), "the deferral");
    assert.match(item.recipients[0].lastError ?? "", new RegExp(`connect to \\[127\\.0\\.0\\.1\\]:${lmtpPort}`));

    // A broken file: refused with the place and the key, nothing changes.
    await writeFile(path, yaml(dir, 1).replace("  recipients: 1", "  recipients: lots"));
    const bad = io();
    assert.equal(await reloadCommand(["--config", path], bad.io), 78);
    assert.match(bad.err(), /the configuration has errors; the server keeps running with the one it had\.\n.*petrel\.yaml:8:\d+: limits\.recipients: got "lots"; expected a number/);
    const still = await SmtpClient.connect(mx);
    await still.ehlo();
    assert.deepEqual(await rcpts(still, 6), [250, 250, 250, 250, 250, 452]);
  } finally {
    SmtpClient.closeAll();
    await mta.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("SIGHUP makes petrel serve read its configuration again", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const config = { dataDir: join(dir, "data"), domains: ["example.test"], listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }], limits: { recipients: 1 } };
  const path = await writeConfig(dir, config);
  const p = await servePetrel(path, 1);
  try {
    await writeConfig(dir, { ...config, limits: { recipients: 3 }, log: { level: "debug" } });
    p.child.kill("SIGHUP");
    const line = await until(async () => p.logs().find((l) => l.msg === "configuration reloaded"), "the reload");
    assert.deepEqual(line.applied, ["certificates", "limits", "log.level"]);
    const c = await SmtpClient.connect(p.port("mx"));
    await c.ehlo();
    expectCode(await c.cmd("MAIL FROM:<s@far.test>"), 250);
    for (const tag of ["a", "b", "c"]) expectCode(await c.cmd(`RCPT TO:<postmaster+${tag}@example.test>`), 250);
    await writeConfig(dir, { ...config, limits: { recipients: "many" } });
    p.child.kill("SIGHUP");
    const refused = await until(async () => p.logs().find((l) => typeof l.msg === "string" && l.msg.startsWith("configuration not reloaded")), "the refusal");
    assert.match(String((refused.errors as string[])[0]), /limits\.recipients: got "many"/);
  } finally {
    SmtpClient.closeAll();
    await stopPetrel(p);
    await cleanup();
  }
});

test("reload keeps the AUTH-failure bans: an address banned before is still refused at connect after it", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-reload-bans-"));
  const path = join(dir, "petrel.yaml");
  const config = (recipients: number) => [
    "hostname: mx.example.test",
    `dataDir: ${dir}`,
    "domains: [example.test]",
    "listeners:",
    "  - { address: 127.0.0.1, port: 0, role: mx }",
    "  - { address: 127.0.0.1, port: 0, role: submission }",
    "admin: { enabled: false }",
    "workers: 1",
    "limits:",
    `  recipients: ${recipients}`,
    "  authFailuresPerConnection: 1",
    "  authFailuresPerClient: 2",
  ].join("\n");
  await writeFile(path, config(2));
  const mta = await startMta(await loadConfig(path), { log: pino({ level: "silent" }), errorSleep: 0, fsync: false, configPath: path });
  try {
    const [mx, submission] = mta.smtp.listeners.map((l) => l.port);
    for (let i = 0; i < 2; i++) {
      const c = await SmtpClient.connect(submission);
      await c.ehlo();
      await c.startTls();
      await c.ehlo();
      assert.match((await c.authPlain("nobody@example.test", "wrong")).text, /^535 5\.7\.8 /);
      assert.match((await c.read()).text, /^421 4\.7\.0 /);
      c.close();
    }
    assert.match((await SmtpClient.connect(mx)).greeting!.text, /^421 4\.7\.0 .*authentication/i, "banned");
    await writeFile(path, config(5));
    assert.deepEqual((await mta.reload()).applied, ["certificates", "limits"]);
    assert.match((await SmtpClient.connect(mx)).greeting!.text, /^421 4\.7\.0 .*authentication/i, "still banned after the reload");
  } finally {
    SmtpClient.closeAll();
    await mta.close();
    await rm(dir, { recursive: true, force: true });
  }
});
