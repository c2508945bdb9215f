/**
 * AUTH-failure bans shared by the nodes of a cluster (storage.kind postgres, one private
 * PostgreSQL): failures from one address spread over two nodes add up to one ban at
 * `limits.authFailuresPerClient`, which both nodes then apply at connect; a node that never saw a
 * failure from an address refuses it once another node banned it; a node started after the ban
 * knows it; the ban ends by the nodes' (injected) clock. With the database stopped, sessions go
 * on and a node's own count still bans.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import pino from "pino";
import pg from "pg";
import { start, type Running } from "./fixtures/mta-helpers.ts";
import { SmtpClient, failAuth, readyForAuth } from "./fixtures/robust-helpers.ts";
import { startPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { until } from "../support/until.ts";

const { Client } = pg;
const BAN_MS = 10 * 60_000;
/** Spread over both nodes. */
const SPREAD = "127.0.66.21";
/** Fails on node 1 only. */
const ONE_NODE = "127.0.66.22";
/** Fails while the database is stopped. */
const OFFLINE = "127.0.66.23";
const GOOD = "127.0.66.24";
/** Banned while no node listened. */
const MISSED = "127.0.66.25";
/** Fails on a node with SMTP workers. */
const WORKERS = "127.0.66.26";

let db: PrivatePostgres;
const clock = new ManualClock(Date.now());
const nodes: Running[] = [];
const at = new Map<Running, string>();

async function node(name: string, address: string): Promise<Running> {
  const n = await start({
    storage: { kind: "postgres", url: db.url, node: name, poolSize: 4 },
    listeners: [{ address, port: 0, role: "mx" }, { address, port: 0, role: "submission" }],
    limits: { shutdownGrace: 2, authFailuresPerConnection: 3, authFailuresPerClient: 4, authBanTime: BAN_MS / 1000 },
  }, undefined, pino({ level: "silent" }), { clock });
  nodes.push(n);
  at.set(n, address);
  return n;
}

before(async () => {
  db = await startPostgres({ host: "127.0.66.10" });
  await node("n1", "127.0.66.11");
  await node("n2", "127.0.66.12");
});

after(async () => {
  SmtpClient.closeAll();
  for (const n of nodes) {
    await n.stop().catch(() => {});
    await rm(n.dir, { recursive: true, force: true });
  }
  await db?.close();
});

/** A session on a node's submission listener after STARTTLS, from `from`. */
const authReady = (n: Running, from: string) => readyForAuth(n.submission, { host: at.get(n)!, localAddress: from });
const fail = (c: SmtpClient) => failAuth(c);

/** The greeting a new connection from `from` gets on a node's mx listener. */
async function greeting(n: Running, from: string): Promise<string> {
  const c = await SmtpClient.connect(n.mx, { host: at.get(n)!, localAddress: from });
  const text = c.greeting!.text;
  c.close();
  await c.closed;
  return text;
}

const written = () => Promise.all(nodes.map((n) => n.mta.authBans!.settled()));

test("failures spread over two nodes reach the limit once; the other node, and a node started later, refuse at connect; the ban ends by the clock", async () => {
  const [n1, n2] = nodes;
  // Two failures on node 1, one on node 2: 3 of 4, nobody is banned.
  const a = await authReady(n1, SPREAD);
  await fail(a);
  await fail(a);
  const b = await authReady(n2, SPREAD);
  await fail(b);
  await written();
  assert.match(await greeting(n1, SPREAD), /^220 /);
  assert.match(await greeting(n2, SPREAD), /^220 /);
  // The fourth, on node 2 (its own count is 2): banned for the cluster.
  await fail(b);
  await written();
  await until(async () => /^421 4\.7\.0 .*authentication/i.test(await greeting(n1, SPREAD)), "node 1 refuses the address banned on node 2");
  assert.match(await greeting(n2, SPREAD), /^421 4\.7\.0 /);
  // The open connection on node 1 is closed at its next failure.
  await fail(a);
  assert.match((await a.read()).text, /^421 4\.7\.0 /);
  b.close();

  // An address node 2 never saw: banned on node 1 by its 4 failures, refused on node 2.
  const c = await authReady(n1, ONE_NODE);
  for (let i = 0; i < 3; i++) await fail(c);
  assert.match((await c.read()).text, /^421 4\.7\.0 /);
  const d = await authReady(n1, ONE_NODE);
  await fail(d);
  assert.match((await d.read()).text, /^421 4\.7\.0 /);
  await written();
  await until(async () => /^421 4\.7\.0 /.test(await greeting(n2, ONE_NODE)), "node 2 refuses an address it never saw fail");
  assert.deepEqual([...n2.mta.authBans!.banned().keys()].sort(), [SPREAD, ONE_NODE]);

  // A node started after the bans knows them at once.
  const n3 = await node("n3", "127.0.66.13");
  assert.match(await greeting(n3, SPREAD), /^421 4\.7\.0 /);
  assert.match(await greeting(n3, ONE_NODE), /^421 4\.7\.0 /);
  // Others log in everywhere.
  const good = await authReady(n3, GOOD);
  assert.match((await good.authPlain("alice@example.test", "alice-password")).text, /^235 /);
  await good.quit();

  // The ban ends after limits.authBanTime, on every node.
  clock.advance(BAN_MS + 1);
  for (const n of nodes) {
    assert.match(await greeting(n, SPREAD), /^220 /);
    assert.match(await greeting(n, ONE_NODE), /^220 /);
  }
  // The database holds only what is in force: the expired rows go with the next write.
  const e = await authReady(n3, GOOD);
  await fail(e);
  e.close();
  await written();
  const pg = new Client({ connectionString: db.url });
  await pg.connect();
  try {
    assert.deepEqual((await pg.query("SELECT address FROM auth_ban")).rows, []);
    assert.deepEqual((await pg.query("SELECT address, failures FROM auth_failure")).rows, [{ address: GOOD, failures: 1 }]);
  } finally {
    await pg.end();
  }
  assert.equal(n3.mta.authBans!.banned().size, 0);
});

test("the database stopped: sessions go on, and a node's own count still bans; back, a node loads the bans it missed", async () => {
  const [n1, n2] = nodes;
  // A ban whose announcement no node heard (written without NOTIFY): a node learns it only by
  // loading, which it does after its LISTEN connection comes back.
  const pg = new Client({ connectionString: db.url });
  await pg.connect();
  await pg.query("INSERT INTO auth_ban (address, until) VALUES ($1, $2)", [MISSED, clock.now() + BAN_MS]);
  await pg.end();
  assert.match(await greeting(n1, MISSED), /^220 /);
  await db.stop();
  try {
    const good = await authReady(n1, GOOD);
    assert.match((await good.authPlain("alice@example.test", "alice-password")).text, /^235 /);
    await good.quit();
    const a = await authReady(n1, OFFLINE);
    for (let i = 0; i < 3; i++) await fail(a);
    assert.match((await a.read()).text, /^421 4\.7\.0 /);
    const b = await authReady(n1, OFFLINE);
    await fail(b);
    assert.match((await b.read()).text, /^421 4\.7\.0 /, "banned by node 1's own count");
    assert.match(await greeting(n1, OFFLINE), /^421 4\.7\.0 /);
    // Node 2 was never told (the write failed), and serves it.
    assert.match(await greeting(n2, OFFLINE), /^220 /);
  } finally {
    await db.start();
  }
  for (const n of [n1, n2]) {
    await until(async () => /^421 4\.7\.0 /.test(await greeting(n, MISSED)), "the node reconnected and loaded the bans", { ms: 30_000 });
  }
});

test("a node with two SMTP workers: a cluster ban is refused at connect on it, and its workers' failures count for the cluster", async () => {
  const [n1] = nodes;
  const w = await start({
    workers: 2,
    storage: { kind: "postgres", url: db.url, node: "w1", poolSize: 4 },
    listeners: [{ address: "127.0.66.14", port: 0, role: "mx" }, { address: "127.0.66.14", port: 0, role: "submission" }],
    limits: { shutdownGrace: 2, authFailuresPerConnection: 3, authFailuresPerClient: 4, authBanTime: BAN_MS / 1000 },
  }, undefined, pino({ level: "silent" }), { clock });
  nodes.push(w);
  at.set(w, "127.0.66.14");
  // Banned on node 1 before this node started (the previous test).
  assert.match(await greeting(w, OFFLINE), /^220 /, "node 1's ban of the offline test was never written");
  assert.match(await greeting(w, MISSED), /^421 4\.7\.0 /);
  // One failure on each worker of this node, two on node 1: banned everywhere.
  const a = await authReady(w, WORKERS);
  const b = await authReady(w, WORKERS);
  assert.deepEqual(w.mta.workers!.status().map((s) => s.sessions), [1, 1]);
  await fail(a);
  await fail(b);
  const c = await authReady(n1, WORKERS);
  await fail(c);
  await written();
  assert.match(await greeting(n1, WORKERS), /^220 /, "3 of 4");
  await fail(c);
  await written();
  assert.match(await greeting(n1, WORKERS), /^421 4\.7\.0 /);
  await until(async () => /^421 4\.7\.0 /.test(await greeting(w, WORKERS)), "the node with workers refuses the address banned on node 1");
  // Its open sessions end at their next failure.
  await fail(a);
  assert.match((await a.read()).text, /^421 4\.7\.0 /);
  b.close();
  c.close();
});
