/**
 * ACME for a cluster (`storage.kind: postgres`) against the real test CA, Pebble: two Petrel nodes
 * on one private PostgreSQL, each with its own challenge listeners and SMTP listener on its own
 * loopback address. The certificate's name resolves (through the test's DNS server) to node B
 * only, as a load balancer may send the CA's request to any node; node A orders. Cases:
 *
 * - HTTP-01 and TLS-ALPN-01: A's order succeeds although only B is reachable (B answers from the
 *   database), and both nodes then serve the issued certificate (verified TLS handshakes).
 * - two nodes checking at the same moment: one order, and the other node serves its certificate
 *   once its follow timer (injected clock) looks in the database.
 * - a node that holds the lease and stops: the other waits until the lease time has passed on its
 *   clock, then orders.
 * - a failed order: its node keeps the lease until its retry, so the other waits as long; the
 *   retry succeeds once the name reaches a node again, and the other node serves the result.
 *
 * Each case gets a database of its own on the one server. PEBBLE_LOG=1 prints Pebble's log.
 */
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import pg from "pg";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { MIN_RETRY } from "../../src/acme/renewal.ts";
import { ACME_LEASE_TIME, PostgresOrderLease } from "../../src/storage/postgres/acme-lease.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { requirePebble, startPebble, type Pebble } from "../support/pebble.ts";
import { createDatabase, startPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { until } from "../support/until.ts";

const HOST = "mail.example.test";
/** Pebble validates HTTP-01 and TLS-ALPN-01 on these ports of the address the name resolves to. */
const HTTP_PORT = 5002;
const TLS_PORT = 5001;
const DB_ADDRESS = "127.0.65.1";
const DNS_ADDRESS = "127.0.65.2";
const PEBBLE_ADDRESS = "127.0.65.3";
const A = "127.0.65.11";
const B = "127.0.65.12";

/** Where nothing listens: the CA's validation is refused. */
const NOWHERE = "127.0.65.29";

function zone(address: string) {
  return { [HOST]: { A: [address] }, "example.test": { SOA: {}, MX: [[10, HOST]] as [number, string][] } };
}

let db: PrivatePostgres;
let dns: TestDnsServer;
let pebble: Pebble;
let root: string;
let databases = 0;

before(async () => {
  requirePebble();
  db = await startPostgres({ host: DB_ADDRESS });
  // Only node B is where the name points: the CA's requests for A's orders reach B.
  dns = await startDnsServer(zone(B), { address: DNS_ADDRESS });
  pebble = await startPebble({ dnsServer: dns.server, httpPort: HTTP_PORT, tlsPort: TLS_PORT, host: PEBBLE_ADDRESS });
  root = await pebble.root();
});

after(async () => {
  if (process.env.PEBBLE_LOG) process.stderr.write(pebble?.output() ?? "");
  await pebble?.stop();
  await dns?.close();
  await db?.close();
});

/** A database of its own on the one server, for one case. */
const freshDatabase = (): Promise<string> => createDatabase(db, `acme_${++databases}`);

interface Node {
  name: string;
  address: string;
  mta: Mta;
  clock: ManualClock;
  logs: Array<Record<string, unknown>>;
  submissions: number;
  stop(): Promise<void>;
}

async function startNode(name: string, address: string, url: string, challenge: "http-01" | "tls-alpn-01"): Promise<Node> {
  const dataDir = await mkdtemp(join(tmpdir(), `petrel-acme-${name}-`));
  const config = parseConfig({
    admin: { enabled: false },
    hostname: HOST,
    workers: 1,
    dataDir,
    domains: ["example.test"],
    storage: { kind: "postgres", url, node: name, poolSize: 4 },
    listeners: [{ address, port: 0, role: "submissions" }],
    tls: {
      acme: {
        directory: pebble.directory,
        email: "hostmaster@example.test",
        ca: pebble.directoryCaFile,
        challenge,
        http: { address, port: HTTP_PORT },
        tlsAlpn: { address, port: TLS_PORT },
      },
    },
    log: { level: "info" },
  }, "test");
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level: "info" }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const clock = new ManualClock(Date.now());
  // Started as a server starts it: the first check waits for the clock; the follow timer is set.
  const mta = await startMta(config, { log, clock, controlSocket: false, acmePolling: { min: 100, max: 500 } });
  const submissions = mta.smtp.listeners.find((l) => l.role === "submissions")!.port;
  let stopped = false;
  return {
    name, address, mta, clock, logs, submissions,
    async stop() {
      if (stopped) return;
      stopped = true;
      await mta.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The certificate a TLS client verifying against Pebble's root gets from a node, or the error. */
function served(node: Node): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: node.address, port: node.submissions, servername: HOST, ca: root, rejectUnauthorized: true }, () => {
      const cert = s.getPeerCertificate();
      s.destroy();
      resolve(cert);
    });
    s.on("error", reject);
  });
}

function count(node: Node, msg: string): number {
  return node.logs.filter((l) => l.msg === msg).length;
}

async function withNodes(challenge: "http-01" | "tls-alpn-01", body: (a: Node, b: Node, url: string) => Promise<void>): Promise<void> {
  const url = await freshDatabase();
  const a = await startNode("a", A, url, challenge);
  let b: Node | undefined;
  try {
    b = await startNode("b", B, url, challenge);
    await body(a, b, url);
  } finally {
    await b?.stop();
    await a.stop();
  }
}

describe("ACME shared by two nodes on PostgreSQL, with Pebble", () => {
  for (const challenge of ["http-01", "tls-alpn-01"] as const) {
    test(`${challenge}: node A orders, the CA reaches only node B, which answers from the database; both serve the certificate`, async () => {
      await withNodes(challenge, async (a, b) => {
        await assert.rejects(served(a), /self-signed|unable to verify/);
        await assert.rejects(served(b), /self-signed|unable to verify/);

        const issued = await a.mta.acme!.check();
        assert.equal(issued.kind, "issued", JSON.stringify(issued) + pebble.output().slice(-2000));
        assert.ok(issued.kind === "issued");
        assert.equal(issued.reason, "missing"); // the cluster held no certificate
        assert.deepEqual(issued.certificate.names, [HOST]);
        assert.equal((await served(a)).serialNumber, issued.certificate.serialNumber);
        if (challenge === "tls-alpn-01") assert.ok(count(b, "TLS-ALPN-01 challenge answered") >= 1, "B answered the CA's handshake");

        // B's first check (due at its start) runs when its clock moves: it finds the certificate in
        // the database, serves it, and orders nothing.
        b.clock.advance(1);
        const check = await b.mta.acme!.check();
        assert.equal(check.kind, "current", JSON.stringify(check));
        const onB = await served(b);
        assert.equal(onB.serialNumber, issued.certificate.serialNumber);
        assert.equal(onB.subjectaltname, `DNS:${HOST}`);
        assert.equal(count(b, "ordering a certificate"), 0);
        assert.equal(count(b, "certificate stored by another node now in service"), 1);
      });
    });
  }

  test("two nodes checking at the same moment: one order; the other serves its certificate at its next follow", async () => {
    await withNodes("http-01", async (a, b) => {
      const [ra, rb] = await Promise.all([a.mta.acme!.check(), b.mta.acme!.check()]);
      const orders = count(a, "ordering a certificate") + count(b, "ordering a certificate");
      assert.equal(orders, 1, JSON.stringify([ra, rb]));
      const [winner, loser, won, lost] = ra.kind === "issued" ? [a, b, ra, rb] : [b, a, rb, ra];
      assert.equal(won.kind, "issued", JSON.stringify([ra, rb]));
      assert.ok(won.kind === "issued");
      assert.equal(lost.kind, "waiting", JSON.stringify(lost));
      assert.ok(lost.kind === "waiting");
      assert.equal(lost.holder, winner.name);
      assert.equal(lost.next, lost.until); // looks again when the winner's lease would run out
      await assert.rejects(served(loser), /self-signed|unable to verify/);

      // A minute later by the loser's clock its follow timer looks in the database — before its
      // next check (at the lease's end) — and serves the certificate.
      loser.clock.advance(60_000);
      await until(async () => (await served(loser).catch(() => null))?.serialNumber === won.certificate.serialNumber, "the loser serving the new certificate");
      assert.equal(count(loser, "certificate stored by another node now in service"), 1);
      assert.equal(count(loser, "ordering a certificate"), 0);
      assert.equal((await served(winner)).serialNumber, won.certificate.serialNumber);
    });
  });

  test("a node that holds the lease and stops: the other orders once the lease time has passed", async () => {
    await withNodes("http-01", async (a, b, url) => {
      // A took the lease (as when it began an order) and then stopped without giving it back.
      const pool = new pg.Pool({ connectionString: url, max: 1 });
      try {
        assert.deepEqual(await new PostgresOrderLease({ pool, node: "a", clock: b.clock }).acquire(), { taken: true });
      } finally {
        await pool.end();
      }
      const until = b.clock.now() + ACME_LEASE_TIME;
      await a.stop();

      const waiting = await b.mta.acme!.check();
      assert.deepEqual(waiting, { kind: "waiting", reason: "missing", holder: "a", until, next: until });
      // Just before the lease's end: still A's.
      b.clock.advance(ACME_LEASE_TIME - 1000);
      const still = await b.mta.acme!.check();
      assert.equal(still.kind, "waiting", JSON.stringify(still));
      assert.equal(count(b, "ordering a certificate"), 0);

      // The lease has run out on B's clock: B takes it and orders.
      b.clock.advance(1000);
      const after = await b.mta.acme!.check();
      assert.equal(after.kind, "issued", JSON.stringify(after));
      assert.ok(after.kind === "issued");
      assert.equal(count(b, "ordering a certificate"), 1);
      assert.equal((await served(b)).serialNumber, after.certificate.serialNumber);
    });
  });

  test("a failed order keeps its node's lease until the retry; the other node waits as long; the retry's certificate reaches both", async () => {
    dns.setZone(zone(NOWHERE));
    try {
      await withNodes("http-01", async (a, b) => {
        const failed = await a.mta.acme!.check();
        assert.equal(failed.kind, "failed", JSON.stringify(failed));
        assert.ok(failed.kind === "failed");
        assert.equal(failed.next, a.clock.now() + MIN_RETRY);
        const waiting = await b.mta.acme!.check();
        assert.deepEqual(waiting, { kind: "waiting", reason: "missing", holder: "a", until: failed.next, next: failed.next });
        assert.equal(count(b, "ordering a certificate"), 0);

        // The name reaches a node again; A's own timer retries at its time and succeeds.
        dns.setZone(zone(B));
        a.clock.advance(MIN_RETRY);
        const now = await a.mta.acme!.check(); // runs after the timer's check
        assert.equal(now.kind, "current", JSON.stringify(now));
        assert.ok(now.kind === "current");
        assert.equal(count(a, "ordering a certificate"), 2);
        assert.equal(count(a, "certificate issued and in service"), 1);
        assert.equal((await served(a)).serialNumber, now.certificate.serialNumber);
        b.clock.advance(60_000);
        await until(async () => (await served(b).catch(() => null))?.serialNumber === now.certificate.serialNumber, "node B serving the retried certificate");
        assert.equal(count(b, "ordering a certificate"), 0);
      });
    } finally {
      dns.setZone(zone(B));
    }
  });
});
