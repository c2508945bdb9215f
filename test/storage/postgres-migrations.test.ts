/**
 * The schema is brought up to date once, by whichever node gets there first, and a database
 * newer than the running Petrel is refused — against a private PostgreSQL started for this file.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MIGRATIONS, SchemaTooNew, migrate, schemaState } from "../../src/storage/postgres/migrations.ts";
import { describePostgres, openPostgresPool, withClient, type PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { postgresConfigFile, startPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dbCommand } from "../../src/cli/db-command.ts";
import { io } from "../e2e/fixtures/mta-helpers.ts";

let server: PrivatePostgres;
let pool: PostgresPool;
const latest = MIGRATIONS[MIGRATIONS.length - 1].version;

before(async () => {
  server = await startPostgres();
  pool = openPostgresPool({ url: server.url, poolSize: 8, node: "test" }, () => {});
});
after(async () => {
  await pool?.end();
  await server?.close();
});

test("migrations are consecutive from 1", () => {
  MIGRATIONS.forEach((m, i) => assert.equal(m.version, i + 1, m.description));
});

test("an empty database is migrated once, even by several nodes at the same moment", async () => {
  assert.deepEqual(await schemaState(pool), { current: 0, latest });
  const runs = await Promise.all([migrate(pool), migrate(pool), migrate(pool)]);
  const applied = runs.flat().sort((a, b) => a - b);
  assert.deepEqual(applied, MIGRATIONS.map((m) => m.version), "each version applied by exactly one of the racing nodes");
  assert.deepEqual(await schemaState(pool), { current: latest, latest });
  assert.deepEqual(await migrate(pool), [], "nothing left to apply");
  const tables = await pool.query<{ t: string | null }>("SELECT to_regclass('petrel_node')::text AS t");
  assert.equal(tables.rows[0].t, "petrel_node");
});

test("a schema newer than this Petrel knows is refused and left untouched", async () => {
  await migrate(pool);
  await pool.query("INSERT INTO petrel_schema (version, description, applied_by) VALUES ($1, 'from the future', 'petrel 99')", [latest + 1]);
  try {
    await assert.rejects(migrate(pool), (err: unknown) => err instanceof SchemaTooNew && new RegExp(`version ${latest + 1}, newer than this Petrel`).test(err.message));
    assert.equal((await schemaState(pool)).current, latest + 1);
  } finally {
    await pool.query("DELETE FROM petrel_schema WHERE version = $1", [latest + 1]);
  }
});

test("a failing migration changes nothing: the transaction is rolled back", async () => {
  const broken = [...MIGRATIONS, { version: latest + 1, description: "half", sql: "CREATE TABLE half (x int); SELECT no_such_function();" }];
  await assert.rejects(migrate(pool, broken), /no_such_function/);
  assert.equal((await schemaState(pool)).current, latest);
  assert.equal((await pool.query<{ t: string | null }>("SELECT to_regclass('half')::text AS t")).rows[0].t, null);
});

test("the password never appears in what is logged about the server", () => {
  const shown = describePostgres(server.url);
  assert.doesNotMatch(shown, new RegExp(new URL(server.url).password));
  assert.match(shown, /^postgres:\/\/petrel:\*\*\*@127\.0\.0\.1:\d+\/petrel$/);
});

test("the database going away and coming back: the pool recovers without being reopened", async () => {
  await server.stop();
  await assert.rejects(pool.query("SELECT 1"));
  await server.start();
  const r = await pool.query<{ one: number }>("SELECT 1 AS one");
  assert.equal(r.rows[0].one, 1);
  await server.kill();
  await assert.rejects(pool.query("SELECT 1"));
  await server.start();
  assert.equal((await pool.query<{ one: number }>("SELECT 1 AS one")).rows[0].one, 1);
});

test("an error a connection emits while being handed out (ReadyForQuery and 57P01 in one read) fails that withClient, not the process; the next opens a new connection", async () => {
  const handover = openPostgresPool({ url: server.url, poolSize: 1, node: "handover" }, () => {});
  try {
    const shutdown = Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" });
    // Emitted after pg-pool has taken its idle listener off and before withClient's await resumes:
    // a tick, as when the socket's handler goes on parsing the same read.
    handover.once("acquire", (client) => process.nextTick(() => client.emit("error", shutdown)));
    await assert.rejects(withClient(handover, async (c) => (await c.query("SELECT 1")).rows), (e: unknown) => e === shutdown);
    assert.deepEqual(await withClient(handover, async (c) => (await c.query<{ one: number }>("SELECT 1 AS one")).rows), [{ one: 1 }]);
    assert.equal(handover.totalCount, 1, "the connection that failed was closed, not given out again");
  } finally {
    await handover.end();
  }
});

test("petrel db status and migrate, from the configuration file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-db-cli-"));
  try {
    const config = await postgresConfigFile(server, dir, { node: "cli" });
    // A database without any Petrel schema (every migration's tables gone with the schema they live in).
    await pool.query("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    const before = io();
    assert.equal(await dbCommand(["status", "--config", config], before.io), 1, before.err());
    assert.equal(before.err(), "");
    assert.match(before.out(), new RegExp(`schema version 0 \\(this Petrel: ${latest}\\) — behind: run petrel db migrate`));
    assert.doesNotMatch(before.out() + before.err(), new RegExp(new URL(server.url).password));
    const run = io();
    assert.equal(await dbCommand(["migrate", "--config", config], run.io), 0, run.err());
    assert.match(run.out(), new RegExp(`applied schema version\\(s\\) ${MIGRATIONS.map((m) => m.version).join(", ")}`));
    const after = io();
    assert.equal(await dbCommand(["status", "--config", config], after.io), 0);
    assert.match(after.out(), /— current/);
    const files = join(dir, "files.yaml");
    await writeFile(files, `dataDir: ${dir}/data\n`);
    const none = io();
    assert.equal(await dbCommand(["migrate", "--config", files], none.io), 78);
    assert.match(none.err(), /storage\.kind is not postgres/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
