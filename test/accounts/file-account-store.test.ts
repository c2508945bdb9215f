import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileAccountStore } from "../../src/accounts/file-account-store.ts";
import type { FileAccountStoreOptions } from "../../src/accounts/file-account-store.ts";
import { AccountError } from "../../src/accounts/account-store.ts";
import { accountStoreContract, refused } from "./account-store-contract.ts";

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-accounts-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function store(dataDir: string, more: Partial<FileAccountStoreOptions> = {}): FileAccountStore {
  return new FileAccountStore({ dataDir, configDomains: ["example.com"], reloadInterval: 0, ...more });
}

accountStoreContract({
  name: "file",
  async fresh(t) {
    const dir = await tempDir(t);
    return async (rules = {}) => store(dir, rules);
  },
});

test("the file: mode 0600, hashes but never the password; no temp files left behind", async (t) => {
  const dir = await tempDir(t);
  const a = store(dir);
  await a.addDomain("example.org");
  await a.addUser("alice@example.org", "correct horse");
  const text = await readFile(join(dir, "accounts.json"), "utf8");
  assert.ok(!text.includes("correct horse"));
  assert.match(text, /"\$scrypt\$ln=14/);
  assert.match(text, /"SCRAM-SHA-256\$4096:/);
  assert.equal((await stat(join(dir, "accounts.json"))).mode & 0o777, 0o600);
  assert.deepEqual((await readdir(dir)).sort(), ["accounts.json"]);
});

test("a missing data directory is created on the first write; an empty store lists nothing", async (t) => {
  const dir = join(await tempDir(t), "nested", "data");
  const s = store(dir);
  assert.deepEqual(await s.listUsers(), []);
  assert.deepEqual(await s.listAliases(), []);
  await s.addDomain("example.org");
  assert.deepEqual(await store(dir).listDomains(), ["example.com", "example.org"]);
});

test("a second instance picks up changes; with a reload interval, only once it has passed", async (t) => {
  const dir = await tempDir(t);
  let clock = 1000;
  const server = store(dir, { reloadInterval: 1000, clock: { now: () => clock } });
  const cli = store(dir);
  assert.deepEqual(await server.resolveRecipient("new@example.com"), { kind: "unknown", reason: "no such user here" });
  await cli.addUser("new@example.com", "pw");
  // Within the interval the snapshot stands.
  assert.equal((await server.resolveRecipient("new@example.com")).kind, "unknown");
  clock += 1000;
  assert.deepEqual(await server.resolveRecipient("new@example.com"), { kind: "local", targets: [{ type: "mailbox", address: "new@example.com" }] });
  assert.equal(await server.verifyPlain("new@example.com", "pw"), "new@example.com");
  await cli.removeUser("new@example.com");
  clock += 1000;
  assert.equal((await server.resolveRecipient("new@example.com")).kind, "unknown");
  // The server's own writes are visible at once.
  await server.addDomain("example.org");
  assert.equal(await server.isLocalDomain("example.org"), true);
});

test("a corrupt accounts.json: refused at first read, kept-last-good on reload, never overwritten", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "accounts.json");
  const errors: Error[] = [];
  const s = store(dir, { onReloadError: (e) => errors.push(e) });
  await s.addUser("alice@example.com", "pw");
  await writeFile(file, "{ not json");
  assert.equal(await s.isLocalDomain("example.com"), true); // still answers from the last good snapshot
  assert.equal((await s.resolveRecipient("alice@example.com")).kind, "local");
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof AccountError && errors[0].code === "corrupt");
  await refused(store(dir).listUsers(), "corrupt", /accounts.json is not valid JSON/);
  await refused(s.addDomain("example.org"), "corrupt");
  assert.equal(await readFile(file, "utf8"), "{ not json");
  await writeFile(file, JSON.stringify({ version: 2 }));
  await refused(store(dir).listDomains(), "corrupt", /is not a Petrel accounts file/);
});

test("temp files left by a crashed writer are cleaned up by the next write", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, ".accounts.json.999999.abcdef.tmp"), "half");
  await store(dir).addDomain("example.org");
  assert.deepEqual((await readdir(dir)).sort(), ["accounts.json"]);
});

test("fromConfig takes dataDir, domains, users, the sub-address separator and postmaster from a loaded configuration", async (t) => {
  const dir = await tempDir(t);
  const s = FileAccountStore.fromConfig(
    { dataDir: dir, domains: ["example.net"], users: [], delivery: { subaddressSeparator: "-" } as never, postmaster: "boss@example.org" },
    { reloadInterval: 0 },
  );
  assert.deepEqual(await s.listDomains(), ["example.net"]);
  assert.equal(s.file, join(dir, "accounts.json"));
  assert.deepEqual(await s.resolveRecipient("postmaster@example.net"), { kind: "local", targets: [{ type: "forward", address: "boss@example.org" }] });
  await s.addUser("al@example.net", "a long enough password");
  assert.deepEqual(await s.resolveRecipient("al-news@example.net"), { kind: "local", targets: [{ type: "mailbox", address: "al@example.net" }] });
});
