/**
 * `petrel doctor` against a running `petrel serve` whose world is right
 * (every finding OK or INFO, exit 0) and one whose world is wrong in every
 * way doctor knows (exit 2, each problem named with its fix): the public DNS
 * comes from the loopback DNS server (MX, SPF, DKIM, DMARC, PTR), outbound
 * port 25 is a scripted greeting server or a port that never answers.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { dkimRecordValue, generateDkimKey } from "../../src/mailauth/dkim-keys.ts";
import { reverseName, startDnsServer, type TestDnsServer, type Zone } from "../support/dns-server.ts";
import { makeCa, makeLeaf, type TestCa } from "../support/certificates.ts";
import { requirePeer } from "../support/peers.ts";
import { until } from "../support/until.ts";
import { postgresConfigFile, startPostgres } from "../support/postgres.ts";
import { startFake, type FakeSmtp } from "../client/fake-smtp.ts";
import { freePort, runPetrel, servePetrel, stopPetrel, tempDir, writeConfig } from "./fixtures/robust-helpers.ts";

let dns: TestDnsServer;
let tmp: { dir: string; cleanup: () => Promise<void> };
let ca: TestCa;
let probe: FakeSmtp;
let dkimRecord = "";
let blackhole: ChildProcess | undefined;
let blackholePort = 0;

/** The zone of a domain set up as `petrel dns` would have it. */
function goodZone(): Zone {
  return {
    "example.test": { MX: [[10, "mx.example.test"]], TXT: ["v=spf1 mx ~all", "google-site-verification=abc"] },
    "mx.example.test": { A: ["127.0.0.1"] },
    // A key record is longer than one character-string (255 octets): split, as zone files do.
    "s1._domainkey.example.test": { TXT: [dkimRecord.match(/.{1,255}/g)!] },
    "_dmarc.example.test": { TXT: ["v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"] },
    [reverseName("127.0.0.1")]: { PTR: ["mx.example.test"] },
  };
}

before(async () => {
  tmp = await tempDir("petrel-doctor-");
  ca = await makeCa(tmp.dir);
  dns = await startDnsServer({});
  probe = await startFake({ greeting: "220 probe.example.test ESMTP ready\r\n" });
});
after(async () => {
  blackhole?.kill("SIGKILL");
  await probe.close();
  await dns.close();
  await tmp.cleanup();
});

async function doctor(configPath: string, ...extra: string[]): Promise<{ code: number | null; stdout: string; stderr: string; lines: string[] }> {
  const p = runPetrel(["doctor", "--config", configPath, "--timeout", "3", ...extra]);
  const exit = await p.exited;
  return { code: exit.code, stdout: p.stdout(), stderr: p.stderr(), lines: p.stdout().split("\n") };
}

function has(lines: string[], re: RegExp): void {
  assert.ok(lines.some((l) => re.test(l)), `no line matching ${re} in:\n${lines.join("\n")}`);
}

/** A Petrel set up for example.test: its certificate from the test CA, a DKIM key made as petrel dkim keygen makes it. */
async function setUp(name: string, cert: { names: string[]; daysTo?: number }): Promise<{ configPath: string; config: Record<string, unknown> }> {
  const dir = join(tmp.dir, name);
  const dataDir = join(dir, "data");
  await mkdir(dataDir, { recursive: true });
  // The record goodZone() publishes is this key's.
  dkimRecord = dkimRecordValue((await generateDkimKey(dataDir, "example.test", "s1", "rsa")).publicKey);
  const leaf = await makeLeaf(dir, "server", { ...cert, ca });
  const config = {
    hostname: "mx.example.test",
    workers: 1,
    dataDir,
    domains: ["example.test"],
    listeners: [
      { address: "127.0.0.1", port: 0, role: "mx" },
      { address: "127.0.0.1", port: 0, role: "submission" },
    ],
    tls: { cert: leaf.certPath, key: leaf.keyPath },
    dns: { servers: [dns.server] },
  };
  return { configPath: await writeConfig(dir, config), config };
}

test("a server set up right: every finding OK or INFO, exit 0", async () => {
  const { configPath } = await setUp("good", { names: ["mx.example.test"], daysTo: 200 });
  dns.setZone(goodZone());
  const p = await servePetrel(configPath, 2);
  try {
    const r = await doctor(configPath, "--probe", `127.0.0.1:${probe.port}`);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    has(r.lines, /^OK {4}server +Petrel \S+ is running as mx\.example\.test \(pid \d+\), up \d+s$/);
    has(r.lines, new RegExp(`^OK {4}listener +127\\.0\\.0\\.1:${p.port("mx")} \\(mx\\) answers: 220 mx\\.example\\.test Petrel ESMTP$`));
    has(r.lines, new RegExp(`^OK {4}listener +127\\.0\\.0\\.1:${p.port("submission")} \\(submission\\) answers: 220`));
    has(r.lines, /^OK {4}certificate +tls\.cert: .*server\.crt and its key are readable and belong together$/);
    has(r.lines, /^OK {4}certificate +it carries the name mx\.example\.test$/);
    has(r.lines, /^OK {4}certificate +valid for 19\d more days$/);
    has(r.lines, /^OK {4}data +.* is writable$/);
    has(r.lines, /^OK {4}mx +example\.test MX 10 mx\.example\.test; mx\.example\.test is 127\.0\.0\.1$/);
    has(r.lines, /^OK {4}spf +example\.test: "v=spf1 mx ~all" lets mx\.example\.test \(127\.0\.0\.1\) send$/);
    has(r.lines, /^OK {4}dkim +s1\._domainkey\.example\.test: the key matches$/);
    has(r.lines, /^OK {4}dmarc +_dmarc\.example\.test: "v=DMARC1; p=quarantine; .*" \(p=quarantine: failing mail goes to spam\)$/);
    has(r.lines, /^OK {4}ptr +127\.0\.0\.1 is mx\.example\.test$/);
    has(r.lines, new RegExp(`^OK {4}outbound +outbound port ${probe.port} is open: the probe host 127\\.0\\.0\\.1 \\(127\\.0\\.0\\.1\\) answered "220 probe\\.example\\.test ESMTP ready"$`));
    assert.equal(r.lines.at(-2), "All good.");
    assert.ok(dns.queries.some((q) => q.type === "PTR" && q.name === reverseName("127.0.0.1")), "PTR asked of the configured resolver");

    const json = await doctor(configPath, "--probe", `127.0.0.1:${probe.port}`, "--json");
    const report = JSON.parse(json.stdout) as { worst: string; findings: { check: string; severity: string }[] };
    assert.equal(report.worst, "ok");
    assert.ok(report.findings.every((f) => f.severity === "ok" || f.severity === "info"));
  } finally {
    await stopPetrel(p);
  }
});

test("a server set up wrong: each problem a FAIL or WARN with its fix, exit 2", async () => {
  const python = requirePeer("python3", "python3");
  const { configPath, config } = await setUp("bad", { names: ["old-name.example.test"], daysTo: 5 });
  dns.setZone({
    "example.test": { MX: [[10, "mail.elsewhere.test"]], TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
    "mail.elsewhere.test": { A: ["192.0.2.1"] },
    "mx.example.test": { A: ["127.0.0.1"] },
    "s1._domainkey.example.test": { TXT: ["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAstale"] },
    [reverseName("127.0.0.1")]: { PTR: ["host-127-0-0-1.provider.test"] },
  });
  const script = fileURLToPath(new URL("./py/blackhole.py", import.meta.url));
  blackholePort = await freePort();
  blackhole = spawn(python, [script, "127.0.0.1", String(blackholePort)], { stdio: ["ignore", "pipe", "ignore"] });
  let ready = "";
  blackhole.stdout!.on("data", (d) => (ready += d));
  await until(() => ready.includes("ready"), "the port that never answers");
  // The running server binds two listeners; the config doctor reads has a third.
  const p = await servePetrel(configPath, 2);
  const wider = await writeConfig(join(tmp.dir, "bad"), {
    ...config, listeners: [...(config.listeners as object[]), { address: "127.0.0.1", port: 2, role: "submissions" }],
  }, "wider.yaml");
  try {
    const r = await doctor(wider, "--probe", `127.0.0.1:${blackholePort}`, "--timeout", "1");
    assert.equal(r.code, 2, r.stdout + r.stderr);
    has(r.lines, /^FAIL {2}listener +127\.0\.0\.1:2 \(submissions\) is configured but not bound by the running server$/);
    has(r.lines, /^FAIL {2}certificate +it is not for mx\.example\.test \(it names old-name\.example\.test\): clients refuse it$/);
    has(r.lines, /^WARN {2}certificate +it expires in [45] days/);
    has(r.lines, /^FAIL {2}mx +example\.test MX 10 mail\.elsewhere\.test: mail for it goes there, not to mx\.example\.test; publish "10 mx\.example\.test\."$/);
    has(r.lines, /^ +fix: "petrel dns example\.test" prints the record to publish at the domain's DNS provider/);
    has(r.lines, /^FAIL {2}spf +example\.test: "v=spf1 ip4:192\.0\.2\.1 -all" gives fail for 127\.0\.0\.1 \(mx\.example\.test\): this server may not send for example\.test/);
    has(r.lines, /^FAIL {2}dkim +s1\._domainkey\.example\.test: a different key is published \(p=.*\); mail signed with this key would fail DKIM$/);
    has(r.lines, /^WARN {2}dmarc +_dmarc\.example\.test: no DMARC record/);
    has(r.lines, /^FAIL {2}ptr +127\.0\.0\.1: its PTR names host-127-0-0-1\.provider\.test; large mailbox providers refuse mail/);
    has(r.lines, /^ +fix: ask whoever owns the address \(the hosting or cloud provider, in its control panel\) to set its reverse DNS \(PTR\) to mx\.example\.test$/);
    has(r.lines, new RegExp(`^FAIL {2}outbound +no answer from the probe host 127\\.0\\.0\\.1 port ${blackholePort} within 1 s: your provider probably blocks outbound port ${blackholePort}`));
    has(r.lines, /^\d+ failures, \d+ warnings\.$/);
  } finally {
    await stopPetrel(p);
    blackhole.kill("SIGKILL");
    blackhole = undefined;
  }
});

test("no server running, a certificate file missing, no DKIM key, no PTR: named; --json", async () => {
  const dir = join(tmp.dir, "stopped");
  await mkdir(dir, { recursive: true });
  dns.setZone({ ...goodZone(), [reverseName("127.0.0.1")]: {} });
  const configPath = await writeConfig(dir, {
    hostname: "mx.example.test",
    workers: 1,
    dataDir: join(dir, "data"),
    domains: ["example.test", "localhost"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
    tls: { cert: join(dir, "missing.crt"), key: join(dir, "missing.key") },
    dns: { servers: [dns.server] },
  });
  await mkdir(join(dir, "data"));
  const r = await doctor(configPath, "--probe", `127.0.0.1:${probe.port}`);
  assert.equal(r.code, 2, r.stdout);
  has(r.lines, /^FAIL {2}server +Petrel is not running: nothing answers on .*control\.sock, so no listener takes mail$/);
  has(r.lines, /^FAIL {2}certificate +tls\.cert: .*missing\.crt does not exist$/);
  has(r.lines, /^INFO {2}dkim +example\.test has no DKIM key: create one with "petrel dkim keygen example\.test" \(mail from example\.test goes out unsigned/);
  has(r.lines, /^INFO {2}dns +localhost is not a public domain name: no DNS to check$/);
  has(r.lines, /^FAIL {2}ptr +127\.0\.0\.1: it has no PTR record/);

  const json = await doctor(configPath, "--probe", `127.0.0.1:${probe.port}`, "--json");
  assert.equal(json.code, 2);
  const report = JSON.parse(json.stdout) as { worst: string; findings: { check: string; severity: string; message: string; fix?: string }[] };
  assert.equal(report.worst, "fail");
  const server = report.findings.find((f) => f.check === "server")!;
  assert.equal(server.severity, "fail");
  assert.match(server.fix!, /petrel serve/);

  const usage = runPetrel(["doctor", "--timeout", "never"]);
  assert.equal((await usage.exited).code, 64);
  const badConfig = runPetrel(["doctor", "--config", join(dir, "nope.yaml")]);
  assert.equal((await badConfig.exited).code, 78);
});

test("on a cluster (storage.kind postgres) the domains added in the database are checked too; a diagnosis does not migrate the schema", async () => {
  const pg = await startPostgres({ host: "127.0.61.5" });
  const dir = join(tmp.dir, "cluster");
  await mkdir(join(dir, "data"), { recursive: true });
  try {
    dns.setZone(goodZone());
    const rest = `hostname: mx.example.test\nworkers: 1\ndomains: [example.test]\nlisteners:\n  - { address: 127.0.0.1, port: 0, role: mx }\ndns:\n  servers: ["${dns.server}"]\n`;
    const unmigrated = await postgresConfigFile(pg, dir, { node: "doctor" }, rest);
    const before = await doctor(unmigrated, "--probe", `127.0.0.1:${probe.port}`);
    assert.doesNotMatch(before.stdout, /cluster\.test/);
    assert.equal((await runPetrel(["db", "status", "--config", unmigrated]).exited).code, 1, "the diagnosis left the schema unmigrated");
    const added = runPetrel(["domain", "add", "cluster.test", "--config", unmigrated]);
    assert.equal((await added.exited).code, 0, added.stderr());
    const r = await doctor(unmigrated, "--probe", `127.0.0.1:${probe.port}`);
    has(r.lines, /^FAIL {2}mx +cluster\.test: no MX record/);
  } finally {
    await pg.close();
  }
});
