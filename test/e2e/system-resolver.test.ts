/**
 * The default configuration delivers through the system's resolver: instance
 * A has no `dns:` section at all, its resolv.conf (injected: the path is the
 * only test hook) names a DNS server on loopback that holds b.test's MX, and
 * a message from alice@a.test reaches bob's Maildir at instance B.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { sendCommand } from "../../src/cli/send.ts";
import { startResolvConfDnsServer } from "../support/dns-server.ts";

const A = "127.0.0.61";
const B = "127.0.0.62";
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(name: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `petrel-sysdns-${name}-`));
  dirs.push(d);
  return d;
}

/** A port free on both addresses, so "port 25" is the same for the MX and the client. */
async function commonPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, A, () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once("error", () => resolve(false));
      s.listen(port, B, () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error("no common free port");
}

test("no dns: section → the resolv.conf servers answer the MX lookup, and the message is delivered at the MX", { timeout: 60_000 }, async () => {
  const dns = await startResolvConfDnsServer({ "b.test": { MX: [[10, "mx.b.test"]] }, "mx.b.test": { A: [B] } });
  const mxPort = await commonPort();
  const resolvConf = join(await tempDir("etc"), "resolv.conf");
  await writeFile(resolvConf, `# as a DHCP client writes it\nsearch example.invalid\nnameserver ${dns.address}\n`);
  const log = pino({ level: "silent" });
  let a: Mta | null = null;
  let b: Mta | null = null;
  try {
    const bDir = await tempDir("b");
    b = await startMta(parseConfig({
    admin: { enabled: false },
      workers: 1, hostname: "mx.b.test", dataDir: bDir, domains: ["b.test"],
      listeners: [{ address: B, port: mxPort, role: "mx" }],
      dns: { servers: [dns.server] }, limits: { shutdownGrace: 2 }, log: { level: "silent" },
    }, "b.yaml"), { log, errorSleep: 0, fsync: false, controlSocket: false });
    await b.accounts.addUser("bob@b.test", "bob-password-long-enough");

    const aConfig = parseConfig({
    admin: { enabled: false },
      workers: 1, hostname: "mx.a.test", dataDir: await tempDir("a"), domains: ["a.test"],
      listeners: [{ address: A, port: 0, role: "submission" }],
      outbound: { port: mxPort, sourceAddress: A, connectionReuse: 0 },
      limits: { shutdownGrace: 2 }, log: { level: "silent" },
    }, "a.yaml");
    assert.deepEqual(aConfig.dns.servers, [], "A has the default: no servers configured");
    a = await startMta(aConfig, { log, errorSleep: 0, fsync: false, controlSocket: false, resolvConf });
    await a.accounts.addUser("alice@a.test", "alice-password-long-enough");

    const pw = join(await tempDir("pw"), "password");
    await writeFile(pw, "alice-password-long-enough\n", { mode: 0o600 });
    let out = "";
    let err = "";
    const stdin = new PassThrough();
    stdin.end();
    const code = await sendCommand([
      "--server", `${A}:${a.smtp.listeners[0].port}`, "--user", "alice@a.test", "--password-file", pw, "--insecure",
      "--from", "alice@a.test", "--to", "bob@b.test", "--subject", "through the system resolver", "--text", "hello",
    ], { stdin, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } } as never);
    assert.equal(code, 0, err + out);

    const newDir = join(bDir, "mail", "b.test", "bob", "new");
    let delivered: string[] = [];
    for (let i = 0; i < 500 && delivered.length === 0; i++) {
      delivered = await readdir(newDir).catch(() => []);
      if (delivered.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(delivered.length, 1, `not delivered at B; A's queue: ${JSON.stringify(await a.queue.list())}`);
    const text = await readFile(join(newDir, delivered[0]), "utf8");
    assert.match(text, /^Return-Path: <alice@a\.test>\nX-Original-To: bob@b\.test\nDelivered-To: bob@b\.test\nReceived: from mx\.a\.test \(\[127\.0\.0\.61\]\)/);
    assert.match(text, /\nSubject: through the system resolver\n/);
    assert.ok(dns.queries.some((q) => q.name === "b.test" && q.type === "MX"), "A asked the resolv.conf server for b.test's MX");
  } finally {
    await a?.close();
    await b?.close();
    await dns.close();
  }
});
