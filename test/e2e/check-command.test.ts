/**
 * `petrel check` as a person runs it: a mail domain on port 25 (its MX from
 * the loopback DNS server, Petrel listening on port 25 of a loopback address
 * of its own — root), the classic blocked port 25 (a port that never
 * answers), a login with the password from a file, --json, and the exit
 * statuses 0 / 1 / 2 / 64.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { requirePeer, requireRoot } from "../support/peers.ts";
import { makeCa, makeLeaf, type TestCa } from "../support/certificates.ts";
import { until } from "../support/until.ts";
import { ALICE, startPetrel } from "./petrel.ts";
import { runPetrel, tempDir } from "./fixtures/robust-helpers.ts";

/** Loopback addresses of this test run's own (127.0.0.0/8 is all loopback on Linux), so port 25 collides with nothing. */
const octets = `${(process.pid >> 8) & 255}.${(process.pid & 255) || 1}`;
const MX_ADDRESS = `127.25.${octets}`;
const BLOCKED_ADDRESS = `127.26.${octets}`;

let dns: TestDnsServer;
let tmp: { dir: string; cleanup: () => Promise<void> };
let ca: TestCa;

before(async () => {
  tmp = await tempDir("petrel-check-cli-");
  ca = await makeCa(tmp.dir);
  dns = await startDnsServer({
    "example.test": { MX: [[10, "mx.example.test"], [20, "backup.example.test"]] },
    "mx.example.test": { A: [MX_ADDRESS] },
    "backup.example.test": { A: [MX_ADDRESS] },
    "submit.example.test": { A: ["127.0.0.1"] },
    "blocked.example.test": { MX: [[10, "mx.blocked.example.test"]] },
    "mx.blocked.example.test": { A: [BLOCKED_ADDRESS] },
  });
});
after(async () => {
  await dns.close();
  await tmp.cleanup();
});

async function check(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runPetrel(["check", ...args, "--dns", dns.server], stdin === undefined ? {} : { stdin });
  const exit = await p.exited;
  return { code: exit.code, stdout: p.stdout(), stderr: p.stderr() };
}

test("a mail domain on port 25: its MX, Petrel's greeting, STARTTLS; a self-signed certificate only warns there (exit 1)", async () => {
  requireRoot("listening on port 25");
  const petrel = await startPetrel({ listeners: [{ address: MX_ADDRESS, port: 25, role: "mx" }] });
  try {
    const r = await check(["example.test", "--timeout", "5"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^Checking example\.test port 25 …/);
    const lines = r.stdout.split("\n");
    assert.ok(lines.includes(`OK    dns         example.test: MX 10 mx.example.test, 20 backup.example.test; mx.example.test is ${MX_ADDRESS}`), r.stdout);
    assert.ok(lines.some((l) => /^INFO  dns +only mx\.example\.test is checked here; check the others too: petrel check backup\.example\.test$/.test(l)), r.stdout);
    assert.ok(lines.includes(`OK    connect     connected to ${MX_ADDRESS} port 25`), r.stdout);
    assert.ok(lines.includes("OK    greeting    220 mx.example.test Petrel ESMTP"), r.stdout);
    assert.ok(lines.some((l) => /^WARN  certificate the certificate is self-signed: senders that verify \(MTA-STS, DANE\) refuse it; most others accept it$/.test(l)), r.stdout);
    assert.ok(lines.some((l) => /^ +fix: use a certificate from a public CA/.test(l)), r.stdout);
    assert.ok(lines.some((l) => /^INFO  auth +no AUTH offered: usual for a server that receives mail/.test(l)), r.stdout);
    assert.equal(lines.at(-2), "0 failures, 1 warning.");

    const json = await check(["example.test", "--json"]);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout);
    assert.equal(report.host, "example.test");
    assert.equal(report.port, 25);
    assert.deepEqual(report.reached, { host: "mx.example.test", address: MX_ADDRESS });
    assert.equal(report.worst, "warn");
    assert.ok(report.findings.some((f: { check: string; severity: string; fix?: string }) => f.check === "certificate" && f.severity === "warn" && f.fix));
  } finally {
    await petrel.stop();
  }
});

test("port 25 that never answers: the provider probably blocks it, in plain words (exit 2)", async () => {
  requireRoot("listening on port 25");
  const python = requirePeer("python3", "python3");
  const script = fileURLToPath(new URL("./py/blackhole.py", import.meta.url));
  const hole = spawn(python, [script, BLOCKED_ADDRESS, "25"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  hole.stdout.on("data", (d) => (out += d));
  hole.stderr.on("data", (d) => (out += d));
  try {
    await until(() => out.includes("ready") || hole.exitCode !== null, "the blackhole to listen");
    assert.equal(hole.exitCode, null, out);
    const started = Date.now();
    const r = await check(["blocked.example.test", "--timeout", "1"]);
    assert.equal(r.code, 2, r.stdout);
    assert.match(r.stdout, new RegExp(`^FAIL  connect +No answer from ${BLOCKED_ADDRESS.replace(/\./g, "\\.")} port 25 within 1 s: home and cloud networks usually block outgoing port 25, so your provider probably blocks it, not the server: ask the provider to open port 25, or send through a smarthost on port 587`, "m"));
    assert.ok(Date.now() - started < 15_000, "--timeout bounds the wait");
  } finally {
    hole.kill("SIGKILL");
  }
});

test("a login with --password-file over STARTTLS, the chain trusted through --ca: exit 0", async () => {
  const leaf = await makeLeaf(tmp.dir, "submit", { names: ["submit.example.test"], ca });
  const petrel = await startPetrel({ tls: { cert: leaf.certPath, key: leaf.keyPath } });
  const passwordFile = join(tmp.dir, "password");
  await writeFile(passwordFile, `${ALICE.password}\n`, { mode: 0o600 });
  try {
    const r = await check([`submit.example.test:${petrel.submission}`, "--user", ALICE.address, "--password-file", passwordFile, "--ca", ca.certPath]);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /^OK    login +logged in as alice@example\.test$/m);
    assert.match(r.stdout, /\nAll good\.\n$/);
    assert.ok(!r.stdout.includes(ALICE.password) && !r.stderr.includes(ALICE.password));

    // No --password: a password never goes on the command line.
    const argv = await check([`submit.example.test:${petrel.submission}`, "--user", ALICE.address, "--password", ALICE.password]);
    assert.equal(argv.code, 64);
    assert.match(argv.stderr, /Unknown option '--password'/);
    // No terminal and no file: nothing to ask on.
    const noTty = await check([`submit.example.test:${petrel.submission}`, "--user", ALICE.address], "");
    assert.equal(noTty.code, 64);
    assert.match(noTty.stderr, /--user needs a password: give --password-file FILE or set PETREL_PASSWORD/);
  } finally {
    await petrel.stop();
  }
});

test("usage errors exit 64", async () => {
  for (const args of [[], ["a.example", "b.example"], ["a.example", "--tls", "ssl"], ["a.example", "--timeout", "soon"], ["a.example:99999"]]) {
    const r = await check(args);
    assert.equal(r.code, 64, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^petrel check: .*\n\nUsage: petrel check HOST\[:PORT\]/);
  }
});
