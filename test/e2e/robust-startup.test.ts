/**
 * `petrel serve` start-up as an operator meets it: problems found only at
 * start-up (a certificate whose key does not match, a data directory that
 * cannot be one) are configuration errors like any other — exit 78 with the
 * file, line and key; a signal during a start-up that hangs still stops it;
 * the start-up summary writes IPv6 listeners as [::1]:port; the DNS servers
 * in use are logged.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { constants } from "node:fs";
import { mkdir, open, readFile, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { generateSelfSigned } from "../../src/server/tls-certificates.ts";
import { parseResolvConf } from "../../src/dns/resolv-conf.ts";
import { requirePeer } from "../support/peers.ts";
import { pollUntil, runPetrel, serveMustExit, servePetrel, stopPetrel, tempDir, within, type PetrelProcess } from "./fixtures/robust-helpers.ts";

/** Run `petrel serve` on `yaml` (written into a temp dir with `files`); it must exit within `ms`. */
async function serveExits(yaml: string, files: Record<string, string> = {}, ms = 15_000) {
  const { dir, cleanup } = await tempDir();
  try {
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    const path = join(dir, "petrel.yaml");
    await writeFile(path, yaml);
    return await serveMustExit(path, ms, { cwd: dir });
  } finally {
    await cleanup();
  }
}

async function twoPairs() {
  const [a, b] = await Promise.all([generateSelfSigned("a.test"), generateSelfSigned("b.test")]);
  return { "a.crt": a.cert, "a.key": a.key, "b.key": b.key };
}

test("tls.cert with a key that does not match: exit 78 with file, line and key", async () => {
  const r = await serveExits([
    "listeners:",
    "  - { address: 127.0.0.1, port: 0, role: mx }",
    "tls:",
    "  cert: a.crt",
    "  key: b.key",
    "",
  ].join("\n"), await twoPairs());
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /nothing was started/);
  assert.match(r.stderr, /petrel\.yaml:4:3: tls\.cert: got ".*a\.crt"; expected a usable certificate and key: the key in .*b\.key does not belong to the certificate/);
  assert.doesNotMatch(r.stdout, /"listening"/);
});

test("a listener's own certificate with a key that does not match: exit 78 naming listeners[1].tls.cert and its line", async () => {
  const r = await serveExits([
    "listeners:",
    "  - { address: 127.0.0.1, port: 0, role: mx }",
    "  - address: 127.0.0.1",
    "    port: 0",
    "    role: submissions",
    "    tls: { cert: a.crt, key: b.key }",
    "",
  ].join("\n"), await twoPairs());
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /petrel\.yaml:6:\d+: listeners\[1\]\.tls\.cert: got ".*a\.crt"; expected a usable certificate and key: the key in .*b\.key does not belong/);
});

test("a dataDir whose parent is a regular file: exit 78 naming dataDir, its line and the file", async () => {
  const r = await serveExits("hostname: mx.example.test\ndataDir: ./plain-file/data\nlisteners: [{ address: 127.0.0.1, port: 0, role: mx }]\n", { "plain-file": "not a directory\n" });
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /petrel\.yaml:2:1: dataDir: got ".*plain-file\/data"; expected a directory Petrel can create: .*plain-file, on its path, is a regular file/);
});

test("a dataDir that is a regular file: exit 78", async () => {
  const r = await serveExits("dataDir: ./plain-file\nlisteners: [{ address: 127.0.0.1, port: 0, role: mx }]\n", { "plain-file": "x" });
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /petrel\.yaml:1:1: dataDir: .*expected a directory: .*plain-file is a regular file/);
});

test("a dataDir under /proc is refused at once (exit 78) instead of spinning", async () => {
  const r = await serveExits("dataDir: /proc/petrel-test/data\nlisteners: [{ address: 127.0.0.1, port: 0, role: mx }]\n", {}, 10_000);
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /petrel\.yaml:1:1: dataDir: got "\/proc\/petrel-test\/data"; expected a directory on a disk .*\/proc is on a proc file system/);
});

test("SIGTERM during a start-up that hangs (FIFOs where the certificate and key should be) stops Petrel", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let p: PetrelProcess | null = null;
  const writers: FileHandle[] = [];
  try {
    const dataDir = join(dir, "data");
    await mkdir(join(dataDir, "tls"), { recursive: true });
    const fifos = [join(dataDir, "tls", "self-signed.crt"), join(dataDir, "tls", "self-signed.key")];
    execFileSync(requirePeer("mkfifo", "coreutils"), fifos);
    const path = join(dir, "petrel.yaml");
    await writeFile(path, `workers: 1\ndataDir: ${dataDir}\nlisteners: [{ address: 127.0.0.1, port: 0, role: mx }]\nadmin: { enabled: false }\n`);
    p = runPetrel(["serve", "--config", path]);
    // Start-up is stuck once Petrel waits on the FIFO: a reader is then waiting, so a non-blocking
    // open for writing succeeds (ENXIO before). The writer stays open and silent: the read hangs.
    for (const fifo of fifos) {
      writers.push(await pollUntil(async () => {
        if (p!.child.exitCode !== null) throw new Error(`petrel exited: ${p!.stderr()}`);
        return open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
      }, 15_000));
    }
    p.kill("SIGTERM");
    assert.ok(await within(p.exited, 12_000), `petrel did not stop after SIGTERM during start-up:\n${p.stderr()}`);
    const exit = await p.exited;
    // Petrel saw the signal, gave start-up its grace period, then died of the signal.
    assert.match(p.stderr(), /start-up did not stop within 5 s after SIGTERM; exiting/);
    assert.equal(exit.signal, "SIGTERM");
    assert.doesNotMatch(p.stdout(), /"msg":"listening"/);
    p = null;
  } finally {
    if (p) {
      p.kill("SIGKILL");
      await p.exited;
    }
    for (const w of writers) await w.close();
    await cleanup();
  }
});

test("the start-up summary writes an IPv6 listener as [::1]:port, in the listening line and the swaks hint", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let p: PetrelProcess | null = null;
  try {
    const path = join(dir, "petrel.yaml");
    await writeFile(path, `workers: 1\ndataDir: ${join(dir, "data")}\nlisteners: [{ address: "::1", port: 0, role: mx }]\nadmin: { enabled: false }\n`);
    p = await servePetrel(path, 1);
    const port = p.port("mx");
    assert.ok(p.stderr().includes(`listening on [::1]:${port}  incoming mail`), p.stderr());
    assert.ok(p.stderr().includes(`swaks --server [::1]:${port} --to postmaster@localhost`), p.stderr());
    assert.doesNotMatch(p.stderr(), /::1:\d/);
    assert.equal((await stopPetrel(p)).code, 0);
    p = null;
  } finally {
    if (p) await stopPetrel(p);
    await cleanup();
  }
});

test("with no dns: section, petrel serve logs the system's DNS servers from /etc/resolv.conf at start", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let p: PetrelProcess | null = null;
  try {
    const path = join(dir, "petrel.yaml");
    await writeFile(path, `workers: 1\ndataDir: ${join(dir, "data")}\nlisteners: [{ address: 127.0.0.1, port: 0, role: mx }]\nadmin: { enabled: false }\n`);
    p = await servePetrel(path, 1);
    const system = parseResolvConf(await readFile("/etc/resolv.conf", "utf8").catch(() => ""));
    const line = p.logs().find((l) => typeof l.msg === "string" && /^(DNS servers from|no nameserver in) \/etc\/resolv\.conf/.test(l.msg));
    assert.ok(line, p.stdout());
    assert.deepEqual((line.dns as { servers: string[] }).servers, system.length > 0 ? system : ["127.0.0.1"]);
    assert.equal((await stopPetrel(p)).code, 0);
    p = null;
  } finally {
    if (p) await stopPetrel(p);
    await cleanup();
  }
});
