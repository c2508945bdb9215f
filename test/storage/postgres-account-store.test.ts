/**
 * The accounts of a cluster in PostgreSQL (a private server for this file): the AccountStore
 * contract the file store meets too; a change made through one node reaches another through
 * NOTIFY with nobody asking; concurrent writers on two nodes lose nothing; a node whose LISTEN
 * connection was cut catches up with what it missed once it reconnects.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import { PostgresAccountStore } from "../../src/storage/postgres/account-store.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { startMigratedPostgres, stopMigratedPostgres, type PrivatePostgres } from "../support/postgres.ts";
import { until } from "../support/until.ts";
import { accountStoreContract } from "../accounts/account-store-contract.ts";

let server: PrivatePostgres;
let pool: PostgresPool;

before(async () => ({ server, pool } = await startMigratedPostgres({ host: "127.0.63.1", poolSize: 8, node: "accounts-test" })));
after(() => stopMigratedPostgres(server, pool));

/** Empty accounts tables (the tests of this file run one after the other). */
async function emptyTables(): Promise<void> {
  await pool.query("TRUNCATE account_domain, account_user, account_alias");
}

async function node(t: { after(fn: () => Promise<void>): void }, more: Partial<Parameters<typeof PostgresAccountStore.open>[0]> = {}): Promise<PostgresAccountStore> {
  const s = await PostgresAccountStore.open({ pool, configDomains: ["example.com"], ...more });
  t.after(() => s.close());
  return s;
}

accountStoreContract({
  name: "postgres",
  async fresh(t) {
    await emptyTables();
    return async (rules = {}) => node(t, rules);
  },
});

test("a user added on one node can log in on another at once; removing it is heard by NOTIFY without asking", async (t) => {
  await emptyTables();
  const a = await node(t);
  const b = await node(t);
  await a.addUser("alice@example.com", "first password");
  // AUTH asks the change counter first: no wait for the notification.
  assert.equal(await b.verifyPlain("alice@example.com", "first password"), "alice@example.com");
  await a.setPassword("alice@example.com", "second password");
  assert.equal(await b.verifyPlain("alice@example.com", "second password"), "alice@example.com");
  assert.equal(await b.verifyPlain("alice@example.com", "first password"), null);
  // mayUseSender never asks the database: only the NOTIFY brings the change.
  assert.equal(b.mayUseSender("alice@example.com", "alice@example.com"), true);
  await a.removeUser("alice@example.com");
  await until(() => !b.mayUseSender("alice@example.com", "alice@example.com"), "node b hears of the removal");
  assert.equal(b.version, a.version);
});

test("two nodes writing at once: every change lands, the checks see each other's writes", async (t) => {
  await emptyTables();
  const a = await node(t);
  const b = await node(t);
  await Promise.all([a.addDomain("one.test"), b.addDomain("two.test")]);
  await Promise.all([
    ...Array.from({ length: 5 }, (_, i) => a.addUser(`a${i}@one.test`, "a password")),
    ...Array.from({ length: 5 }, (_, i) => b.addUser(`b${i}@two.test`, "a password")),
  ]);
  // The same user from both nodes: exactly one wins, the other is refused as existing.
  const both = await Promise.allSettled([a.addUser("same@example.com", "pw one"), b.addUser("same@example.com", "pw two")]);
  assert.deepEqual(both.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
  const fresh = await node(t, { listen: false });
  assert.equal((await fresh.listUsers()).length, 11);
  assert.deepEqual(await fresh.listDomains(), ["example.com", "one.test", "two.test"]);
  await until(async () => (await a.listUsers()).length === 11 && (await b.listUsers()).length === 11, "both nodes see all users");
});

test("a node whose LISTEN connection is cut reconnects and loads what it missed meanwhile", async (t) => {
  await emptyTables();
  const clock = new ManualClock();
  const errors: string[] = [];
  let reconnected = 0;
  const b = await node(t, { timer: clock, onError: (m) => errors.push(m), onReconnect: () => reconnected++ });
  const a = await node(t);
  await pool.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'petrel accounts-test accounts'");
  await until(() => errors.some((m) => /LISTEN connection to the database was lost/.test(m)), "node b notices the cut");
  await a.addDomain("missed.test"); // announced while b does not listen: the notification is lost to it
  await a.addUser("late@missed.test", "a password");
  assert.equal(b.mayUseSender("late@missed.test", "late@missed.test"), false);
  clock.advance(250); // the first reconnection attempt
  await until(() => reconnected === 1, "node b reconnects");
  assert.equal(b.mayUseSender("late@missed.test", "late@missed.test"), true);
  assert.equal(await b.isLocalDomain("missed.test"), true);
  // …and listens again.
  await a.removeUser("late@missed.test");
  await until(() => !b.mayUseSender("late@missed.test", "late@missed.test"), "node b hears again");
});

test("the password is stored hashed, never as given", async (t) => {
  await emptyTables();
  const a = await node(t);
  await a.addUser("alice@example.com", "correct horse");
  const row = (await pool.query<{ password: string; scram: string }>("SELECT password, scram FROM account_user WHERE address = 'alice@example.com'")).rows[0];
  assert.match(row.password, /^\$scrypt\$ln=14/);
  assert.match(row.scram, /^SCRAM-SHA-256\$4096:/);
  const dump = JSON.stringify((await pool.query("SELECT * FROM account_user")).rows);
  assert.ok(!dump.includes("correct horse"));
});
