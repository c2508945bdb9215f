/**
 * "Streams, not buffers": a 25 MiB message through DATA to the real
 * `petrel serve` (a child process, so its RSS is its own) and on into the
 * Maildir must not raise the server's resident memory by anything like the
 * message size — with the spool on the filesystem, and in PostgreSQL
 * (storage.kind postgres, a private server), where the body streams into
 * rows and back out of them.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  SmtpClient, expectCode, pollUntil, queuedId, readDelivered, rssOf, servePetrel, stopPetrel, tempDir, whereabouts, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";
import { startPostgres, type PrivatePostgres } from "../support/postgres.ts";

const MiB = 1024 * 1024;
const MESSAGE = 25 * MiB;
let pg: PrivatePostgres | null = null;
after(() => pg?.close());

/** Line `n` of the big message: 78 characters + CRLF, never starting with ".". */
function line(n: number): string {
  return `L${String(n).padStart(9, "0")} ${"0123456789abcdefghijklmnopqrstuvwxyz".repeat(2).slice(0, 66)}\r\n`;
}

for (const kind of ["filesystem", "postgres"] as const) test(`a 25 MiB message raises the server's RSS by less than 10 MiB through DATA and 20 MiB until it is in the Maildir (storage ${kind})`, { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = await tempDir();
  const dataDir = join(dir, "data");
  let p: PetrelProcess | null = null;
  let sampler: NodeJS.Timeout | undefined;
  try {
    if (kind === "postgres") pg ??= await startPostgres({ host: "127.0.61.4" });
    const config = await writeConfig(dir, {
      hostname: "mx.example.test",
      workers: 1,
      dataDir,
      domains: ["example.test"],
      listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
      limits: { messageSize: "30MiB" },
      log: { level: "warn" },
      ...(pg && kind === "postgres" ? { storage: { kind: "postgres", url: pg.url, node: "memory" } } : {}),
    });
    // The "listening" lines are at info level; this config logs warnings only, so find the port from the summary.
    // V8's old space is kept small so that garbage does not wait long for a full GC; the young
    // generation is what Petrel starts with (--max-semi-space-size=8, src/system/node-flags.ts —
    // bin/petrel's flag wins over NODE_OPTIONS). Message bytes held in Buffers live outside the
    // V8 heap, so a server that buffered a body would show here whatever the heap's limits.
    p = await servePetrel(config, 0, 15_000, { NODE_OPTIONS: "--max-old-space-size=64" });
    const port = await portFromSummary(p);
    const c = await SmtpClient.connect(port);
    await c.ehlo();
    // Warm up with a 4 MiB message (code compiled, buffers pooled), and let the queue deliver it
    // so that its delivery does not overlap the measurement.
    const warm = await sendBig(c, 4 * MiB, "warm-up");
    await pollUntil(async () => ((await readDelivered(dataDir)).some((d) => d.id === warm.id) ? true : undefined), 10_000);
    const baseline = await rssOf(p.pid);
    let peak = baseline;
    const pid = p.pid;
    sampler = setInterval(() => {
      rssOf(pid).then((r) => (peak = Math.max(peak, r)), () => {});
    }, 10);
    const { id, sent } = await sendBig(c, MESSAGE, "big");
    peak = Math.max(peak, await rssOf(pid));
    const received = peak;
    // On until it is delivered: reading the body back out of the spool must stream too.
    await pollUntil(async () => ((await readDelivered(dataDir)).some((d) => d.id === id) ? true : undefined), 30_000);
    clearInterval(sampler);
    sampler = undefined;
    peak = Math.max(peak, await rssOf(pid));
    await c.quit();
    const growth = received - baseline;
    const withDelivery = peak - baseline;
    t.diagnostic(`storage ${kind}: RSS baseline ${(baseline / MiB).toFixed(1)} MiB; growth ${(growth / MiB).toFixed(1)} MiB receiving ${(sent / MiB).toFixed(1)} MiB, ${(withDelivery / MiB).toFixed(1)} MiB until delivered`);
    assert.ok(growth < 10 * MiB, `RSS grew by ${(growth / MiB).toFixed(1)} MiB while receiving ${(sent / MiB).toFixed(1)} MiB`);
    // Delivery's own churn (the Maildir writer, the queue) is noisier; a body read whole would still show.
    assert.ok(withDelivery < 20 * MiB, `RSS grew by ${(withDelivery / MiB).toFixed(1)} MiB until ${(sent / MiB).toFixed(1)} MiB were delivered`);

    assert.equal((await stopPetrel(p)).code, 0);
    p = null;
    const copies = (await whereabouts(dataDir)).get(id);
    assert.ok(copies && copies.length > 0, "the big message was stored");
    assert.ok(copies.every((x) => x.content.length === sent), `stored whole (${sent} bytes)`);
  } finally {
    if (sampler) clearInterval(sampler);
    if (p) {
      p.kill("SIGKILL");
      await p.exited;
    }
    await cleanup();
  }
});

/** MAIL, RCPT, DATA and a `size`-byte body written with back-pressure; the queue id. */
async function sendBig(c: SmtpClient, size: number, subject: string): Promise<{ id: string; sent: number }> {
  expectCode(await c.cmd("MAIL FROM:<a@example.org>"), 250);
  expectCode(await c.cmd("RCPT TO:<postmaster@example.test>"), 250);
  expectCode(await c.cmd("DATA"), 354);
  const head = `Subject: ${subject}\r\n\r\n`;
  c.write(head);
  let sent = head.length;
  let n = 0;
  while (sent < size) {
    let chunk = "";
    while (chunk.length < 256 * 1024) chunk += line(n++);
    sent += chunk.length;
    if (!c.socket.write(chunk)) await new Promise((r) => c.socket.once("drain", r));
  }
  c.write(".\r\n");
  return { id: queuedId(await c.read()), sent };
}

async function portFromSummary(p: PetrelProcess): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const m = /listening on 127\.0\.0\.1:(\d+) +incoming mail/.exec(p.stderr());
    if (m) return Number(m[1]);
    if (p.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no listener in the summary: ${p.stderr()}`);
}
