/**
 * DKIM keys of a cluster (storage.kind postgres): nodes on one private PostgreSQL sign with the one
 * key `petrel dkim keygen` (the real CLI) put in the database, whose record the loopback DNS server
 * publishes; each signature is verified through that DNS server. Cases: two nodes (one with SMTP
 * workers) sign with the same key, a reload brings a new selector to both and a reload naming a
 * key that exists nowhere fails, leaving the keys as they were; keygen again for a
 * selector is refused and changes nothing; a single node's key file moves in when it turns
 * cluster (and a second node's different file under that selector is not used); a key in neither
 * place stops `petrel serve`, naming it. Each case gets a database of its own on the one server.
 * And the same reload on a single node, whose keys stay files.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import nodemailer from "nodemailer";
import pg from "pg";
import pino from "pino";
import { loadConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { createResolver } from "../../src/dns/resolver.ts";
import { mailauthResolver } from "../../src/mailauth/dns-resolver.ts";
import { DkimMessageVerifier } from "../../src/mailauth/dkim-verify.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../support/dns-server.ts";
import { createDatabase, postgresConfigFile, startPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { until } from "../support/until.ts";
import { runPetrel, serveMustExit } from "./fixtures/robust-helpers.ts";

const DB_ADDRESS = "127.0.67.1";
const DNS_ADDRESS = "127.0.67.2";
const NODE_A = "127.0.67.11";
const NODE_B = "127.0.67.12";
const NODE_SOLO = "127.0.67.13";
const NODE_NONE = "127.0.67.14";
const NODE_FILES = "127.0.67.15";
const PASSWORD = "alice-password-123";

let server: PrivatePostgres;
let dns: TestDnsServer;
let databases = 0;
const dirs: string[] = [];

before(async () => {
  server = await startPostgres({ host: DB_ADDRESS });
  dns = await startDnsServer({}, { address: DNS_ADDRESS });
});

after(async () => {
  await dns?.close();
  await server?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A database of its own on the one server, for one case. */
async function freshDatabase(): Promise<PrivatePostgres> {
  return { ...server, url: await createDatabase(server, `dkim_${++databases}`) };
}

async function query<T extends pg.QueryResultRow>(db: PrivatePostgres, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

async function tempDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `petrel-dkim-${name}-`));
  dirs.push(dir);
  return dir;
}

/** The YAML of a node (after storage:), signing example.test with `selectors`. */
function nodeYaml(address: string, selectors: readonly string[], workers = 1): string {
  return [
    "hostname: mail.example.test",
    `workers: ${workers}`,
    "domains: [example.test]",
    "listeners:",
    `  - { address: ${address}, port: 0, role: submission }`,
    "dns:",
    `  servers: ["${dns.server}"]`,
    "admin: { enabled: false }",
    "log: { level: silent }",
    "limits: { shutdownGrace: 2 }",
    ...(selectors.length > 0 ? ["dkim:", "  domains:", "    example.test:", `      selectors: [${selectors.join(", ")}]`] : []),
    "",
  ].join("\n");
}

/** A cluster node's config file in `dir` (its data directory is `dir`/data). */
function clusterConfig(db: PrivatePostgres, dir: string, node: string, address: string, selectors: readonly string[], workers = 1): Promise<string> {
  return postgresConfigFile(db, dir, { node, poolSize: "4" }, nodeYaml(address, selectors, workers));
}

interface Node {
  readonly mta: Mta;
  readonly address: string;
  readonly dataDir: string;
  readonly logs: Array<Record<string, unknown>>;
}

async function startNode(configPath: string, address: string): Promise<Node> {
  const config = await loadConfig(configPath);
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const mta = await startMta(config, { log: pino({ level: "info" }, sink), errorSleep: 0, fsync: false, controlSocket: false, configPath });
  return { mta, address, dataDir: config.dataDir, logs };
}

/** `petrel dkim keygen` (the real CLI) against a config file. */
async function keygen(configPath: string, selector: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runPetrel(["dkim", "keygen", "example.test", "--selector", selector, "--config", configPath]);
  const { code } = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** The TXT record's character-strings in the zone-file entry keygen printed. */
function printedRecord(stdout: string, selector: string): string[] {
  const entry = stdout.slice(stdout.indexOf(`${selector}._domainkey.example.test.`));
  // One line, or several inside parentheses (zone-file.ts).
  const value = entry.slice(entry.indexOf("IN TXT"), entry.includes("IN TXT (") ? entry.indexOf(")") : entry.indexOf("\n"));
  return [...value.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
}

function publish(records: Record<string, string[]>): void {
  const zone: Record<string, object> = {};
  for (const [selector, strings] of Object.entries(records)) zone[`${selector}._domainkey.example.test`] = { TXT: [strings] };
  dns.setZone(zone as Zone);
}

async function send(node: Node, subject: string): Promise<void> {
  const port = node.mta.smtp.listeners.find((l) => l.role === "submission")!.port;
  const t = nodemailer.createTransport({
    host: node.address, port, requireTLS: true, tls: { rejectUnauthorized: false },
    auth: { user: "alice@example.test", pass: PASSWORD },
  });
  try {
    await t.sendMail({ from: "alice@example.test", to: "bob@example.test", subject, text: "hello\n" });
  } finally {
    t.close();
  }
}

/** The delivered message with `subject`, from whichever node's Maildir it went to (the queue is shared). */
async function delivered(nodes: readonly Node[], subject: string): Promise<string> {
  const { readdir } = await import("node:fs/promises");
  return until(async () => {
    for (const n of nodes) {
      const inbox = join(n.dataDir, "mail", "example.test", "bob", "new");
      for (const name of await readdir(inbox).catch(() => [] as string[])) {
        const text = await readFile(join(inbox, name), "utf8");
        if (text.includes(`\nSubject: ${subject}\n`)) return text;
      }
    }
    return undefined;
  }, `"${subject}" delivered`);
}

/** Each DKIM signature's selector and result, verified through the loopback DNS server. */
async function verdicts(message: string): Promise<string[]> {
  const resolver = createResolver({ servers: [dns.server], timeout: 2000, tries: 1, failureTtl: 0 });
  try {
    const v = new DkimMessageVerifier({ resolver: mailauthResolver(resolver) });
    await v.write(Buffer.from(message.replace(/\r?\n/g, "\r\n")));
    return (await v.end()).signatures.map((s) => `${s.domain} ${s.selector} ${s.result}`);
  } finally {
    resolver.close();
  }
}

test("keygen once on node A: both nodes (B with SMTP workers) sign with that key; a reload brings a second selector to both", { timeout: 120_000 }, async () => {
  const db = await freshDatabase();
  const dirA = await tempDir("a");
  const dirB = await tempDir("b");
  const configA = await clusterConfig(db, dirA, "a", NODE_A, ["s1"]);
  const configB = await clusterConfig(db, dirB, "b", NODE_B, ["s1"], 2);

  const made = await keygen(configA, "s1");
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /in the database \(postgres:\/\/.*\), table dkim_key: every node signs with it/);
  const s1 = printedRecord(made.stdout, "s1");
  assert.match(s1.join(""), /^v=DKIM1; k=rsa; p=MIIBIjAN/);
  // Nothing in either data directory: the key is the cluster's.
  await assert.rejects(stat(join(dirA, "data", "dkim")), { code: "ENOENT" });
  const rows = await query<{ domain: string; selector: string; node: string; private_key: string }>(db, "SELECT domain, selector, node, private_key FROM dkim_key");
  assert.deepEqual(rows.map((r) => [r.domain, r.selector, r.node]), [["example.test", "s1", "a"]]);
  assert.match(rows[0].private_key, /^-----BEGIN PRIVATE KEY-----\n/);
  publish({ s1 });

  // petrel dns reads the public key from the database: the record it prints is keygen's.
  const printed = runPetrel(["dns", "example.test", "--config", configB]);
  assert.equal((await printed.exited).code, 0, printed.stderr());
  assert.deepEqual(printedRecord(printed.stdout(), "s1"), s1);
  // …and --check (as petrel doctor) compares the database's key with the published one.
  const checked = runPetrel(["dns", "example.test", "--check", "--config", configB]);
  await checked.exited;
  assert.match(checked.stdout(), /^DKIM +ok +s1\._domainkey\.example\.test: the key matches$/m, checked.stderr());
  const doctor = runPetrel(["doctor", "--json", "--probe", "127.0.67.29:9", "--timeout", "1", "--config", configA]);
  await doctor.exited;
  const findings = (JSON.parse(doctor.stdout()) as { findings: { check: string; severity: string; message: string }[] }).findings;
  assert.deepEqual(findings.filter((f) => f.check === "dkim").map((f) => [f.severity, f.message]), [["ok", "s1._domainkey.example.test: the key matches"]]);

  const a = await startNode(configA, NODE_A);
  const b = await startNode(configB, NODE_B);
  try {
    await a.mta.accounts.addUser("alice@example.test", PASSWORD);
    await a.mta.accounts.addUser("bob@example.test", "bob-password-1234");
    await send(a, "via a");
    await send(b, "via b");
    assert.deepEqual(await verdicts(await delivered([a, b], "via a")), ["example.test s1 pass"]);
    assert.deepEqual(await verdicts(await delivered([a, b], "via b")), ["example.test s1 pass"]);

    // Rotation: a new key made on B, published, named in both configs; a reload signs with both.
    const second = await keygen(configB, "s2");
    assert.equal(second.code, 0, second.stderr);
    publish({ s1, s2: printedRecord(second.stdout, "s2") });
    await writeFile(configA, (await readFile(configA, "utf8")).replace("selectors: [s1]", "selectors: [s1, s2]"));
    await writeFile(configB, (await readFile(configB, "utf8")).replace("selectors: [s1]", "selectors: [s1, s2]"));
    assert.ok((await a.mta.reload()).applied.includes("dkim"));
    assert.ok((await b.mta.reload()).applied.includes("dkim"));
    await send(a, "after reload via a");
    await send(b, "after reload via b");
    assert.deepEqual(await verdicts(await delivered([a, b], "after reload via a")), ["example.test s1 pass", "example.test s2 pass"]);
    assert.deepEqual(await verdicts(await delivered([a, b], "after reload via b")), ["example.test s1 pass", "example.test s2 pass"]);

    // A selector with no key anywhere: the reload fails naming it, and the node keeps signing as before.
    await writeFile(configB, (await readFile(configB, "utf8")).replace("selectors: [s1, s2]", "selectors: [s1, s2, s3]"));
    await assert.rejects(b.mta.reload(), { message: `DKIM keys in dkim.domains cannot be used:\n  no DKIM key "s3" for example.test in the database, nor ${join(dirB, "data", "dkim", "example.test", "s3.key")} on this node: create it with "petrel dkim keygen example.test --selector s3"` });
    await send(b, "after a failed reload");
    assert.deepEqual(await verdicts(await delivered([a, b], "after a failed reload")), ["example.test s1 pass", "example.test s2 pass"]);
  } finally {
    await a.mta.close();
    await b.mta.close();
  }
});

test("keygen a second time for a selector is refused and changes nothing", { timeout: 60_000 }, async () => {
  const db = await freshDatabase();
  const dir = await tempDir("again");
  const config = await clusterConfig(db, dir, "a", NODE_A, []);
  assert.equal((await keygen(config, "s1")).code, 0);
  const before = await query(db, "SELECT * FROM dkim_key");
  const again = await keygen(config, "s1");
  assert.equal(again.code, 1);
  assert.equal(again.stdout, "");
  assert.equal(again.stderr, `petrel dkim keygen: the DKIM key "s1" of example.test already exists in the database: choose another selector (keys are never overwritten; see "Rotating a DKIM key")\n`);
  assert.deepEqual(await query(db, "SELECT * FROM dkim_key"), before);
});

test("a single node's key file moves into the database when it turns cluster: its signature still verifies against the old record; another node's different file under that selector is not used", { timeout: 120_000 }, async () => {
  const dir = await tempDir("solo");
  // The node as it ran alone: the key made by keygen in its data directory, its record published.
  const solo = join(dir, "solo.yaml");
  await writeFile(solo, `dataDir: ${dir}/data\n${nodeYaml(NODE_SOLO, ["s1"])}`);
  const made = await keygen(solo, "s1");
  assert.equal(made.code, 0, made.stderr);
  const keyFile = join(dir, "data", "dkim", "example.test", "s1.key");
  const fileBytes = await readFile(keyFile);
  const s1 = printedRecord(made.stdout, "s1");
  publish({ s1 });

  // A second machine, where someone ran keygen again under the same selector: a different key.
  const otherDir = await tempDir("other");
  const otherSolo = join(otherDir, "solo.yaml");
  await writeFile(otherSolo, `dataDir: ${otherDir}/data\n${nodeYaml(NODE_B, ["s1"])}`);
  assert.equal((await keygen(otherSolo, "s1")).code, 0);

  const db = await freshDatabase();
  const node = await startNode(await clusterConfig(db, dir, "solo", NODE_SOLO, ["s1"]), NODE_SOLO);
  let other: Node | undefined;
  try {
    const rows = await query<{ node: string; public_key: string }>(db, "SELECT node, public_key FROM dkim_key WHERE domain = 'example.test' AND selector = 's1'");
    assert.deepEqual(rows.map((r) => r.node), ["solo"]);
    assert.equal(rows[0].public_key, await readFile(join(dir, "data", "dkim", "example.test", "s1.pub"), "utf8"));
    assert.deepEqual(await readFile(keyFile), fileBytes, "the file is left as it is");
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    assert.ok(node.logs.some((l) => l.level === 30 && l.msg === `DKIM key "s1" of example.test moved from ${keyFile} into the database, for every node (the file is left as it is)`));

    other = await startNode(await clusterConfig(db, otherDir, "other", NODE_B, ["s1"]), NODE_B);
    const otherKey = join(otherDir, "data", "dkim", "example.test", "s1.key");
    assert.ok(other.logs.some((l) => l.level === 40 && l.msg === `${otherKey} is not the cluster's DKIM key "s1" of example.test: the key in the database (made by node solo) signs; the file is not used`));
    assert.equal((await query(db, "SELECT 1 FROM dkim_key")).length, 1);

    await node.mta.accounts.addUser("alice@example.test", PASSWORD);
    await node.mta.accounts.addUser("bob@example.test", "bob-password-1234");
    await send(node, "solo turned cluster");
    await send(other, "via the other node");
    assert.deepEqual(await verdicts(await delivered([node, other], "solo turned cluster")), ["example.test s1 pass"]);
    assert.deepEqual(await verdicts(await delivered([node, other], "via the other node")), ["example.test s1 pass"]);
  } finally {
    await other?.mta.close();
    await node.mta.close();
  }
});

test("a key named in dkim.domains that is neither in the database nor a file stops petrel serve, naming it", { timeout: 60_000 }, async () => {
  const db = await freshDatabase();
  const dir = await tempDir("none");
  const config = await clusterConfig(db, dir, "none", NODE_NONE, ["s9"]);
  const r = await serveMustExit(config);
  // As on a single node (an error start-up does not sort into a sysexits status): exit 1.
  assert.equal(r.code, 1, r.stderr);
  const path = join(dir, "data", "dkim", "example.test", "s9.key");
  assert.equal(r.stderr, `petrel: DKIM keys in dkim.domains cannot be used:\n  no DKIM key "s9" for example.test in the database, nor ${path} on this node: create it with "petrel dkim keygen example.test --selector s9"\n`);
  // Nothing was left registered as running.
  const nodes = await query<{ name: string; stopped_at: Date | null }>(db, "SELECT name, stopped_at FROM petrel_node");
  assert.ok(nodes.every((n) => n.stopped_at !== null), JSON.stringify(nodes));
});

test("a single node (keys in files, no database): a reload signs with a selector added to dkim.domains; the keys stay files", { timeout: 60_000 }, async () => {
  const dir = await tempDir("files");
  const path = join(dir, "petrel.yaml");
  await writeFile(path, `dataDir: ${dir}/data\n${nodeYaml(NODE_FILES, ["f1"])}`);
  const f1 = await keygen(path, "f1");
  const f2 = await keygen(path, "f2");
  assert.equal(f2.code, 0, f2.stderr);
  publish({ f1: printedRecord(f1.stdout, "f1"), f2: printedRecord(f2.stdout, "f2") });
  const node = await startNode(path, NODE_FILES);
  try {
    await node.mta.accounts.addUser("alice@example.test", PASSWORD);
    await node.mta.accounts.addUser("bob@example.test", "bob-password-1234");
    await send(node, "one key");
    assert.deepEqual(await verdicts(await delivered([node], "one key")), ["example.test f1 pass"]);
    await writeFile(path, (await readFile(path, "utf8")).replace("selectors: [f1]", "selectors: [f1, f2]"));
    assert.deepEqual((await node.mta.reload()).applied, ["certificates", "dkim"]);
    await send(node, "two keys");
    assert.deepEqual(await verdicts(await delivered([node], "two keys")), ["example.test f1 pass", "example.test f2 pass"]);
    assert.equal((await stat(join(dir, "data", "dkim", "example.test", "f2.key"))).mode & 0o777, 0o600);
  } finally {
    await node.mta.close();
  }
});
