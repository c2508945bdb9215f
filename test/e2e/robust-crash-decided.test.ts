/**
 * Headers decided at the end of data survive a crash: Petrel (with a check
 * that adds a field and an Authentication-Results fragment, and quarantines
 * one message) is SIGKILLed right after its 250s; the real `petrel serve`
 * restarted on the same data directory delivers both messages with those
 * headers — and without the forged Authentication-Results field claiming
 * our name — the held one after `petrel queue list` showed why it was held
 * and `petrel queue release` let it go. Both spool formats.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { readdir, readFile } from "node:fs/promises";
import {
  SmtpClient, pollUntil, queuedId, runPetrel, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";

const NODE = fileURLToPath(new URL("../../node_modules/.bin/node", import.meta.url));
const SCRIPT = fileURLToPath(new URL("./fixtures/serve-with-check.ts", import.meta.url));
const FORGED = "Authentication-Results: mx.example.test; dkim=pass header.d=forged.test\r\n";

function message(subject: string): string {
  return `${FORGED}From: sender@example.org\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n`;
}

async function delivered(dataDir: string): Promise<string[]> {
  const dir = join(dataDir, "mail", "example.test", "postmaster", "new");
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(names.map((n) => readFile(join(dir, n), "utf8")));
}

for (const format of ["files", "journal"] as const) {
  test(`SIGKILL after the 250 (spool.format ${format}): a restarted petrel serve delivers the decided headers`, { timeout: 60_000 }, async () => {
    const { dir, cleanup } = await tempDir();
    const dataDir = join(dir, "data");
    const configPath = await writeConfig(dir, {
      hostname: "mx.example.test",
      workers: 1,
      dataDir,
      domains: ["example.test"],
      listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
      spool: { format },
      log: { level: "info" },
    });
    let p: PetrelProcess | null = null;
    try {
      p = runPetrel([configPath], { command: [NODE, SCRIPT] });
      const running = p;
      const port = await pollUntil(() => {
        if (running.child.exitCode !== null) throw new Error(`the check's server exited: ${running.stderr()}`);
        return running.logs().find((l) => l.msg === "listening")?.port as number | undefined;
      }, 15_000);
      const c = await SmtpClient.connect(port);
      await c.ehlo();
      const held = queuedId(await c.send("sender@example.org", ["postmaster@example.test"], message("hold")));
      const plain = queuedId(await c.send("sender@example.org", ["postmaster@example.test"], message("plain")));
      p.kill("SIGKILL");
      assert.equal((await p.exited).signal, "SIGKILL");
      c.close();
      p = null;

      p = await servePetrel(configPath, 1);
      const list = runPetrel(["queue", "list", "--config", configPath]);
      assert.equal((await list.exited).code, 0, list.stderr());
      assert.match(list.stdout(), new RegExp(`^${held} \\(held: decider: held for a person\\)`, "m"));
      const release = runPetrel(["queue", "release", held, "--config", configPath]);
      assert.equal((await release.exited).code, 0, release.stderr());

      const files = await pollUntil(async () => {
        const f = await delivered(dataDir);
        return f.length >= 2 ? f : undefined;
      }, 20_000);
      assert.equal(files.length, 2);
      for (const [id, subject] of [[held, "hold"], [plain, "plain"]]) {
        const file = files.find((f) => f.includes(` id ${id}`));
        assert.ok(file, `${id} delivered`);
        const head = file.slice(0, file.indexOf("\n\n"));
        assert.match(head, /^Return-Path: <sender@example\.org>\n/);
        assert.match(head, /\nAuthentication-Results: mx\.example\.test;\n\tspf=pass smtp\.mailfrom=sender@example\.org\nX-Decided: at the end of data\nReceived: from \S+ \(\[127\.0\.0\.1\]\)\n\tby mx\.example\.test \(Petrel\)/, head);
        assert.ok(!head.includes("forged.test"), `the forged field is gone from ${id}`);
        assert.ok(file.endsWith(`\n\nbody of ${subject}\n`));
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
}
