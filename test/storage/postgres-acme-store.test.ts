/**
 * ACME's shared state in PostgreSQL (a private server for this file): the order lease is held by
 * exactly one of many nodes taking it at once, renewed only by its holder, free again after its
 * time; the account key is one for all nodes; a certificate one node stores becomes another
 * node's served file through `adopt`; challenges published by one node are found by another; a
 * node whose database does not answer answers the CA's request with a 404, within the lookup's
 * bound, and stays up; a node that ran alone before brings its account key and CA-issued
 * certificate into an empty database (never a placeholder).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import * as net from "node:net";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { openPostgresPool, type PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { PostgresAcmeStore } from "../../src/storage/postgres/acme-store.ts";
import { ACME_LEASE_TIME, PostgresOrderLease } from "../../src/storage/postgres/acme-lease.ts";
import { FileAcmeStore } from "../../src/acme/acme-store.ts";
import { acmeHttp01Handler, ChallengeResponses, HTTP01_PREFIX } from "../../src/acme/challenges.ts";
import { describeCertificate } from "../../src/acme/renewal.ts";
import { generateSelfSigned } from "../../src/server/tls-certificates.ts";
import { startHttpListener } from "../../src/web/web-listener.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { createTestCa } from "../support/test-ca.ts";

let server: PrivatePostgres;
let pool: PostgresPool;
const dirs: string[] = [];

before(async () => ({ server, pool } = await startMigratedPostgres({ host: "127.0.65.20", poolSize: 12, node: "acme-test" })));
after(async () => {
  await stopMigratedPostgres(server, pool);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function node(name: string): Promise<{ store: PostgresAcmeStore; served: FileAcmeStore }> {
  const dir = await mkdtemp(join(tmpdir(), `petrel-acme-store-${name}-`));
  dirs.push(dir);
  const served = new FileAcmeStore(dir);
  return { store: new PostgresAcmeStore({ pool, node: name, served }), served };
}

test("the order lease: one of ten nodes taking it at once gets it; only the holder renews; held until a retry; free after its time or its release", async () => {
  await pool.query("UPDATE acme_order_lease SET node = NULL, lease_until = NULL");
  const clock = new ManualClock(Date.UTC(2026, 11, 4));
  const leases = Array.from({ length: 10 }, (_, i) => new PostgresOrderLease({ pool, node: `n${i}`, clock }));
  const results = await Promise.all(leases.map((l) => l.acquire()));
  const winners = results.flatMap((r, i) => (r.taken ? [i] : []));
  assert.equal(winners.length, 1, JSON.stringify(results));
  const holder = `n${winners[0]}`;
  const until = clock.now() + ACME_LEASE_TIME;
  for (const r of results) if (!r.taken) assert.deepEqual(r, { taken: false, holder, until });

  const other = leases[(winners[0] + 1) % 10];
  const mine = leases[winners[0]];
  assert.equal(await other.renew(), false);
  await other.release(); // not its lease: nothing changes
  assert.deepEqual(await other.acquire(), { taken: false, holder, until });

  // Renewed a minute later, the lease lasts from then; just before that end it is still held.
  clock.advance(60_000);
  assert.equal(await mine.renew(), true);
  clock.advance(ACME_LEASE_TIME - 1);
  assert.deepEqual(await other.acquire(), { taken: false, holder, until: until + 60_000 });
  // At its end another node takes it, and the old holder's renewal says it lost it.
  clock.advance(1);
  assert.deepEqual(await other.acquire(), { taken: true });
  assert.equal(await mine.renew(), false);
  // After a failed order the holder keeps it until its retry, past the lease time.
  const retry = clock.now() + 3 * ACME_LEASE_TIME;
  await other.holdUntil(retry);
  clock.advance(2 * ACME_LEASE_TIME);
  assert.deepEqual(await mine.acquire(), { taken: false, holder: `n${leases.indexOf(other)}`, until: retry });
  // A release frees it at once.
  await other.release();
  assert.deepEqual(await mine.acquire(), { taken: true });
  await mine.release();
});

test("one account key for all nodes; a certificate stored by one node is adopted once by another, into its served file", async () => {
  await pool.query("TRUNCATE acme_account, acme_certificate");
  const a = await node("a");
  const b = await node("b");
  const [ka, kb] = await Promise.all([a.store.accountKey(), b.store.accountKey()]);
  assert.equal(ka, kb);
  assert.match(ka, /^-----BEGIN PRIVATE KEY-----/);
  assert.equal(await a.store.accountKey(), ka);

  assert.equal(await b.store.current(), undefined);
  assert.equal(await b.store.adopt(), undefined);
  const pems = await generateSelfSigned("mail.example.test");
  const saved = await a.store.saveCertificate(pems.key, pems.cert);
  assert.deepEqual(saved, describeCertificate(pems.cert));
  assert.equal(await readFile(a.served.certificatePath, "utf8"), `${pems.key.trimEnd()}\n${pems.cert.trimEnd()}\n`);
  assert.deepEqual(await a.store.adopt(), undefined); // A serves it already

  assert.deepEqual(await b.store.current(), saved);
  assert.deepEqual(await b.store.adopt(), saved);
  assert.equal(await readFile(b.served.certificatePath, "utf8"), await readFile(a.served.certificatePath, "utf8"));
  assert.equal(await b.store.adopt(), undefined); // nothing new since
  const row = (await pool.query<{ serial: string; node: string }>("SELECT serial, node FROM acme_certificate")).rows;
  assert.deepEqual(row, [{ serial: saved.serialNumber, node: "a" }]);

  // A newer one replaces it, and B adopts that.
  const next = await generateSelfSigned("mail.example.test");
  const replaced = await a.store.saveCertificate(next.key, next.cert);
  assert.notEqual(replaced.serialNumber, saved.serialNumber);
  assert.equal((await b.store.adopt())?.serialNumber, replaced.serialNumber);
});

test("a node that ran alone brings its account key and certificate into an empty database; a placeholder stays out", async () => {
  await pool.query("TRUNCATE acme_account, acme_certificate");
  // A node still on its placeholder, first: nothing of it is stored.
  const fresh = await node("fresh");
  await fresh.served.ensurePlaceholder("mail.example.test", ["mail.example.test"]);
  assert.equal(await fresh.store.adopt(), undefined);
  assert.equal(await fresh.store.current(), undefined);

  const old = await node("old");
  const ca = await createTestCa();
  const issued = await ca.issue(["mail.example.test"]);
  const accountKey = await old.served.accountKey(); // made and kept in its acme/ while it ran alone
  const saved = await old.served.saveCertificate(issued.key, issued.cert);
  assert.equal(saved.selfSigned, false);
  assert.equal(await old.store.adopt(), undefined); // stored from its own file, which it serves already
  assert.deepEqual(await old.store.current(), saved);
  assert.equal(await old.store.accountKey(), accountKey);
  // The node on its placeholder serves that certificate now, under that account.
  assert.deepEqual(await fresh.store.adopt(), saved);
  assert.equal(await fresh.store.accountKey(), accountKey);
  assert.equal(await readFile(fresh.served.certificatePath, "utf8"), await readFile(old.served.certificatePath, "utf8"));
});

test("challenges one node publishes are answered by another over HTTP-01; removed ones are not", async () => {
  const a = await node("a");
  const b = await node("b");
  const onB = new ChallengeResponses();
  onB.share(b.store);
  await a.store.addChallenge({ type: "http-01", token: "tok-1_A", keyAuthorization: "tok-1_A.thumbprint" });
  await a.store.addChallenge({ type: "tls-alpn-01", name: "Mail.Example.Test", certPem: "CERT", keyPem: "KEY" });
  assert.equal(await onB.http01Response(`${HTTP01_PREFIX}tok-1_A`), "tok-1_A.thumbprint");
  assert.equal(await onB.http01Response(`${HTTP01_PREFIX}tok-2`), undefined);
  assert.deepEqual(await b.store.challenge({ type: "tls-alpn-01", name: "mail.example.test" }), { type: "tls-alpn-01", name: "mail.example.test", certPem: "CERT", keyPem: "KEY" });
  await a.store.removeChallenge({ type: "http-01", token: "tok-1_A" });
  await a.store.removeChallenge({ type: "tls-alpn-01", name: "MAIL.example.test" });
  assert.equal(await onB.http01Response(`${HTTP01_PREFIX}tok-1_A`), undefined);
  assert.equal((await pool.query("SELECT 1 FROM acme_challenge")).rowCount, 0);
});

test("a database that does not answer: the HTTP-01 request gets a 404 within the lookup's bound, and the listener stays up", async () => {
  // A server that accepts connections and never says a word: the pg client waits for its greeting.
  const silent = net.createServer(() => {});
  const held: net.Socket[] = [];
  silent.on("connection", (s) => held.push(s));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.65.21", resolve));
  const port = (silent.address() as net.AddressInfo).port;
  const deadPool = openPostgresPool({ url: `postgres://petrel:x@127.0.65.21:${port}/petrel`, poolSize: 2, node: "dead" }, () => {});
  const dir = await mkdtemp(join(tmpdir(), "petrel-acme-dead-"));
  dirs.push(dir);
  const challenges = new ChallengeResponses();
  const errors: string[] = [];
  challenges.share(new PostgresAcmeStore({ pool: deadPool, node: "dead", served: new FileAcmeStore(dir) }), { timeoutMs: 300, onError: (m) => errors.push(m) });
  challenges.addHttp01("local-token", "local-token.thumbprint");
  const listener = await startHttpListener({ address: "127.0.65.21", port: 0, handlers: [acmeHttp01Handler(challenges)], log: pino({ level: "silent" }) });
  try {
    const started = Date.now();
    const r = await get(listener.port, `${HTTP01_PREFIX}unknown-token`);
    const took = Date.now() - started;
    assert.equal(r.status, 404);
    assert.ok(took >= 250 && took < 2_000, `answered after ${took} ms`);
    assert.deepEqual(errors, ["acme: no answer from the database within 300 ms for the HTTP-01 token unknown-token; answered as unknown"]);
    // The ordering node's own answers never wait for the database.
    const local = await get(listener.port, `${HTTP01_PREFIX}local-token`);
    assert.deepEqual(local, { status: 200, body: "local-token.thumbprint" });
  } finally {
    await listener.close();
    for (const s of held) s.destroy();
    silent.close();
    await deadPool.end().catch(() => {});
  }
});

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.65.21", port, path, agent: false }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}
