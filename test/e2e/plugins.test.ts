/**
 * Plugins through a whole Petrel: the contrib example refusing senders, a
 * plugin that throws at a stage (451 4.3.0, the server goes on, nothing
 * half-stored), and `petrel serve` refusing to start on a plugin that
 * cannot load (exit 78 naming the entry).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { withPetrel } from "./petrel.ts";
import {
  SmtpClient, expectCode, readSpool, serveMustExit, servePetrel, stopPetrel, tempDir, writeConfig,
} from "./fixtures/robust-helpers.ts";

const CONTRIB = resolve(import.meta.dirname, "../../contrib/plugins/refuse-domains.ts");
let dir: { dir: string; cleanup: () => Promise<void> };

before(async () => {
  dir = await tempDir("petrel-plugins-e2e-");
});

after(async () => {
  await dir.cleanup();
});

const MESSAGE = "Subject: plugin\r\n\r\nhello\r\n";

test("contrib/plugins/refuse-domains.ts in a running Petrel: senders at the listed domains get 550 5.7.1, others are stored", async () => {
  await withPetrel({ plugins: [{ path: CONTRIB, options: { domains: ["spam.example"] } }] }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    assert.equal((await c.cmd("MAIL FROM:<x@news.spam.example>")).text, "550 5.7.1 <x@news.spam.example>: Sender address rejected: access denied");
    expectCode(await c.send("x@example.org", ["alice@example.test"], MESSAGE), 250);
    expectCode(await c.send("", ["alice@example.test"], MESSAGE), 250);
    await c.quit();
    const stored = await readSpool(p.server.spool);
    assert.deepEqual(stored.map((m) => m.envelope.mailFrom).sort(), ["", "x@example.org"]);
  });
});

test("a plugin that throws at a stage gets 451 4.3.0 for that command, never a crash or a half-stored message", async () => {
  const path = join(dir.dir, "throws.ts");
  await writeFile(path, `
    import type { CheckFactory } from "${resolve(import.meta.dirname, "../../src/policy/plugin-api.ts")}";
    const factory: CheckFactory = () => ({
      name: "throws",
      open: () => ({
        rcpt(_s, _tx, to) {
          if (to.localPart === "boom") throw new Error("boom at RCPT");
        },
        message: () => ({
          async endOfData(header) {
            if (header.some((f) => f.name.toLowerCase() === "subject" && f.value.includes("explode"))) throw new TypeError("boom at end of data");
          },
        }),
      }),
    });
    export default factory;
  `);
  await withPetrel({ plugins: [{ path }] }, async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    expectCode(await c.cmd("MAIL FROM:<a@example.org>"), 250);
    assert.equal((await c.cmd("RCPT TO:<boom@example.test>")).text, "451 4.3.0 Error: temporary failure, try again later");
    expectCode(await c.cmd("RCPT TO:<alice@example.test>"), 250);
    expectCode(await c.cmd("DATA"), 354);
    c.write("Subject: please explode\r\n\r\nbody\r\n.\r\n");
    assert.equal((await c.read()).text, "451 4.3.0 Error: temporary failure, try again later");
    // The session goes on, and the next message is stored.
    expectCode(await c.send("a@example.org", ["alice@example.test"], MESSAGE), 250);
    await c.quit();
    const stored = await readSpool(p.server.spool);
    assert.equal(stored.length, 1);
    assert.match(stored[0].body.toString(), /Subject: plugin/);
    // A new connection is served: nothing crashed.
    const d = await SmtpClient.connect(p.mx);
    assert.equal(d.greeting!.code, 220);
    await d.quit();
  });
});

test("petrel serve: a plugin that cannot load stops start-up with exit 78 naming plugins[i].path; a good one serves", async () => {
  const bad = join(dir.dir, "bad-options.ts");
  await writeFile(bad, `export { default } from ${JSON.stringify(CONTRIB)};\n`);
  const base = {
    hostname: "mx.example.test",
    workers: 1,
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    log: { level: "info" },
  };
  const failing = await writeConfig(dir.dir, { ...base, dataDir: join(dir.dir, "data-bad"), plugins: [{ path: bad, options: { domains: 7 } }] }, "bad.yaml");
  const exit = await serveMustExit(failing);
  assert.equal(exit.code, 78, exit.stderr);
  assert.match(exit.stderr, /plugins\[0\]\.path: got ".*bad-options\.ts"; .*its factory failed: options\.domains must be a list of domain names/);
  assert.match(exit.stderr, /nothing was started/);

  const good = await writeConfig(dir.dir, { ...base, dataDir: join(dir.dir, "data-good"), plugins: [{ path: CONTRIB, options: { domains: ["spam.example"] } }] }, "good.yaml");
  const petrel = await servePetrel(good, 1);
  try {
    const c = await SmtpClient.connect(petrel.port("mx"));
    await c.ehlo();
    assert.equal((await c.cmd("MAIL FROM:<x@spam.example>")).code, 550);
    await c.quit();
    assert.ok(petrel.logs().some((l) => l.plugin === "refuse-domains.ts" && l.msg === "refusing mail from the listed sender domains"));
  } finally {
    SmtpClient.closeAll();
    await stopPetrel(petrel);
  }
});
