/**
 * Two Petrel nodes sharing one private PostgreSQL (storage.kind postgres), each with its own data
 * directory and listeners: a user added with the CLI (pointed at one node's config) logs in with
 * SMTP AUTH over STARTTLS on the other node at once; a password changed through a node's account
 * store (what the admin API calls) counts on the other at once; a removed user is refused
 * everywhere. Both nodes are in the registry and in `petrel status`; a third start under a name
 * in use is refused; a node that stops is shown gone.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { start, io, type Running } from "./fixtures/mta-helpers.ts";
import { SmtpClient } from "./fixtures/robust-helpers.ts";
import { startPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { accountsCommand } from "../../src/cli/accounts-commands.ts";
import { statusCommand } from "../../src/cli/status-command.ts";
import { NodeNameInUse } from "../../src/cluster/node-registry.ts";

let db: PrivatePostgres;
let n1: Running;
let n2: Running;

function nodeConfig(name: string, address: string): Record<string, unknown> {
  return {
    storage: { kind: "postgres", url: db.url, node: name, poolSize: 4 },
    listeners: [{ address, port: 0, role: "mx" }, { address, port: 0, role: "submission" }],
  };
}

before(async () => {
  db = await startPostgres({ host: "127.0.63.10" });
  n1 = await start(nodeConfig("n1", "127.0.63.11"));
  n2 = await start(nodeConfig("n2", "127.0.63.12"));
});

after(async () => {
  SmtpClient.closeAll();
  for (const n of [n1, n2]) {
    if (!n) continue;
    await n.stop().catch(() => {});
    await rm(n.dir, { recursive: true, force: true });
  }
  await db?.close();
});

/** AUTH PLAIN after STARTTLS on a node's submission listener: the reply code. */
async function login(node: Running, address: string, user: string, password: string): Promise<number> {
  const c = await SmtpClient.connect(node.submission, { host: address });
  try {
    await c.ehlo();
    await c.startTls();
    await c.ehlo();
    return (await c.authPlain(user, password)).code;
  } finally {
    await c.quit();
  }
}

test("a user added with the CLI against one node logs in on the other at once; changes and removal count everywhere", async () => {
  // The bootstrap users of the fixture were added through node 1; node 2 has them from the database.
  assert.deepEqual((await n2.mta.accounts.listUsers()).map((u) => u.address), ["alice@example.test", "bob@example.test"]);
  const add = io("carol's long password\n");
  assert.equal(await accountsCommand(["user", "add", "carol@example.test", "--config", n1.configPath], add.io), 0, add.err());
  assert.equal(await login(n2, "127.0.63.12", "carol@example.test", "carol's long password"), 235);
  assert.equal(await login(n1, "127.0.63.11", "carol@example.test", "carol's long password"), 235);

  await n2.mta.accounts.setPassword("carol@example.test", "carol's second password");
  assert.equal(await login(n1, "127.0.63.11", "carol@example.test", "carol's second password"), 235);
  assert.equal(await login(n1, "127.0.63.11", "carol@example.test", "carol's long password"), 535);

  const remove = io();
  assert.equal(await accountsCommand(["user", "remove", "carol@example.test", "--config", n2.configPath], remove.io), 0, remove.err());
  assert.equal(await login(n1, "127.0.63.11", "carol@example.test", "carol's second password"), 535);
  assert.equal(await login(n2, "127.0.63.12", "carol@example.test", "carol's second password"), 535);
});

test("both nodes are registered and healthy; petrel status shows the cluster; a name in use is refused", async () => {
  const nodes = await n1.mta.node!.nodes();
  assert.deepEqual(nodes.map((n) => [n.name, n.health, n.self, n.pid]), [["n1", "healthy", true, process.pid], ["n2", "healthy", false, process.pid]]);
  const st = io();
  assert.equal(await statusCommand(["--config", n2.configPath], st.io), 0, st.err());
  assert.match(st.out(), /^cluster: this is node n2; 2 of 2 nodes healthy$/m);
  assert.match(st.out(), /^ {2}n1 +healthy +\S+ pid \d+, Petrel \S+, last heartbeat \S+ ago$/m);
  assert.match(st.out(), /^ {2}n2 +healthy .*\(this node\)$/m);
  const json = io();
  assert.equal(await statusCommand(["--config", n1.configPath, "--json"], json.io), 0);
  const parsed = JSON.parse(json.out()) as { cluster: { node: string; nodes: { name: string; health: string }[] } };
  assert.equal(parsed.cluster.node, "n1");
  assert.deepEqual(parsed.cluster.nodes.map((n) => n.health), ["healthy", "healthy"]);

  // Another host starting as n1 while n1 runs here (this process: same host, a running pid — n1 itself).
  await assert.rejects(start({ ...nodeConfig("n1", "127.0.63.13") }), (err: unknown) => {
    assert.ok(err instanceof NodeNameInUse, String(err));
    assert.match(err.message, /^the node name n1 is in use by a running node \(host \S+, pid \d+, last heartbeat \d+ s ago\): give this node another name \(storage\.node\)/);
    return true;
  });
  // n1 still counts as n1.
  assert.equal((await n2.mta.node!.nodes()).find((n) => n.name === "n1")!.health, "healthy");
});

test("a node that stops is shown gone at once, and its name is free", async () => {
  await n2.stop();
  const nodes = await n1.mta.node!.nodes();
  const gone = nodes.find((n) => n.name === "n2")!;
  assert.equal(gone.health, "gone");
  assert.notEqual(gone.stoppedAt, null);
  const again = await start(nodeConfig("n2", "127.0.63.12"), n2.dir);
  n2 = again;
  assert.equal((await n1.mta.node!.nodes()).find((n) => n.name === "n2")!.health, "healthy");
});
