/**
 * The cluster's DKIM keys in PostgreSQL (a private server for this file): of nodes moving their
 * own different key files in under one selector at the same moment, every one ends up signing with
 * the same key — the one stored first — and the others' files are reported, not used; a key made
 * in the store is never replaced; the database going away is an error for the caller, not a crash.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateDkimKey, dkimRecordValue } from "../../src/mailauth/dkim-keys.ts";
import { generateStoredDkimKey, listStoredDkimKeys, loadStoredDkimKey } from "../../src/mailauth/cluster-dkim-keys.ts";
import { openPostgresPool, type PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { PostgresDkimKeyStore } from "../../src/storage/postgres/dkim-key-store.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";

let server: PrivatePostgres;
let pool: PostgresPool;
const dirs: string[] = [];

before(async () => ({ server, pool } = await startMigratedPostgres({ host: "127.0.67.20", poolSize: 12, node: "dkim-test" })));
after(async () => {
  await stopMigratedPostgres(server, pool);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test("eight nodes moving in eight different files under one selector at once: all sign with the first stored; the seven others are told their file is not used", async () => {
  const nodes = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    const dir = await mkdtemp(join(tmpdir(), `petrel-dkim-store-${i}-`));
    dirs.push(dir);
    await generateDkimKey(dir, "race.test", "s1", "rsa");
    return { dir, store: new PostgresDkimKeyStore({ pool, node: `n${i}` }), notes: [] as string[] };
  }));
  const keys = await Promise.all(nodes.map((n) => loadStoredDkimKey(n.store, n.dir, "race.test", "s1", (level, m) => n.notes.push(`${level}: ${m}`))));
  const records = new Set(keys.map((k) => dkimRecordValue(k.privateKey)));
  assert.equal(records.size, 1, "one key for every node");
  const row = (await pool.query<{ node: string }>("SELECT node FROM dkim_key WHERE domain = 'race.test'")).rows;
  assert.equal(row.length, 1);
  const winner = nodes.find((n) => `n${nodes.indexOf(n)}` === row[0].node)!;
  assert.deepEqual(winner.notes.map((m) => m.split(":")[0]), ["info"]);
  for (const n of nodes.filter((x) => x !== winner)) {
    assert.deepEqual(n.notes, [`warn: ${join(n.dir, "dkim", "race.test", "s1.key")} is not the cluster's DKIM key "s1" of race.test: the key in the database (made by node ${row[0].node}) signs; the file is not used`]);
  }
  assert.deepEqual((await listStoredDkimKeys(nodes[0].store, "race.test")).map((k) => [k.selector, k.algorithm, k.record]), [["s1", "rsa", [...records][0]]]);
});

test("a key made in the store is never replaced: the second keygen is refused and the row is as it was", async () => {
  const store = new PostgresDkimKeyStore({ pool, node: "maker" });
  const first = await generateStoredDkimKey(store, "Keep.TEST", "ed", "ed25519");
  const before = await store.get("keep.test", "ed");
  await assert.rejects(generateStoredDkimKey(store, "keep.test", "ed", "rsa"), {
    message: `the DKIM key "ed" of keep.test already exists in the database: choose another selector (keys are never overwritten; see "Rotating a DKIM key")`,
  });
  assert.deepEqual(await store.get("keep.test", "ed"), before);
  assert.equal(dkimRecordValue(first.publicKey), (await listStoredDkimKeys(store, "keep.test"))[0].record);
  await assert.rejects(generateStoredDkimKey(store, "keep.test", "../x", "rsa"), /invalid DKIM selector/);
});

test("the database gone: loading a key fails with an error for the caller (start-up or reload says it), nothing crashes", async () => {
  const dead = openPostgresPool({ url: `postgres://petrel:x@127.0.67.21:1/petrel`, poolSize: 1, node: "dead" }, () => {});
  try {
    const dir = await mkdtemp(join(tmpdir(), "petrel-dkim-store-dead-"));
    dirs.push(dir);
    await assert.rejects(loadStoredDkimKey(new PostgresDkimKeyStore({ pool: dead, node: "dead" }), dir, "a.test", "s1"), /ECONNREFUSED/);
  } finally {
    await dead.end();
  }
});
