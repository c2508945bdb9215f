/**
 * What every AccountStore does, whatever holds the accounts: the same answers, the same refusals
 * (AccountError codes and sentences), the config file's accounts merged in and read-only. Run by
 * test/accounts/file-account-store.test.ts and test/storage/postgres-account-store.test.ts against their store.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { AccountError } from "../../src/accounts/account-store.ts";
import type { AccountErrorCode, AccountStore } from "../../src/accounts/account-store.ts";
import type { AccountRules } from "../../src/accounts/snapshot-account-store.ts";
import { hashPassword, scramVerifier } from "../../src/accounts/password.ts";
import { deriveScramVerifier } from "../../src/sasl/scram.ts";

export interface StoreKind {
  readonly name: string;
  /**
   * Empty storage for one test (its local domain: example.com from the config file); the function
   * returned opens a store on it — each call another process's view of the same accounts.
   */
  fresh(t: { after(fn: () => Promise<void>): void }): Promise<(rules?: Partial<AccountRules>) => Promise<AccountStore>>;
}

export async function refused(p: Promise<unknown>, code: AccountErrorCode, message?: string | RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AccountError, `expected an AccountError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (typeof message === "string") assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  });
}

export function accountStoreContract(kind: StoreKind): void {
  test(`${kind.name}: round trip: domains, users and aliases persist and a new instance reads them`, async (t) => {
    const open = await kind.fresh(t);
    const a = await open({ clock: { now: () => 1_700_000_000_000 } });
    await a.addDomain("Example.ORG");
    await a.addUser("Alice@Example.org", "correct horse", { quota: 1024 ** 3 });
    await a.addAlias("sales@example.org", ["alice@example.org", "Boss@Partner.NET"]);
    await a.addAlias("@example.org", "alice@example.org");

    const b = await open();
    assert.deepEqual(await b.listDomains(), ["example.com", "example.org"]);
    assert.deepEqual(await b.listUsers(), [{ address: "alice@example.org", quota: 1024 ** 3, createdAt: 1_700_000_000_000, source: "store", admin: false }]);
    assert.deepEqual(await b.getUser("ALICE@example.org"), { address: "alice@example.org", quota: 1024 ** 3, createdAt: 1_700_000_000_000, source: "store", admin: false });
    assert.equal(await b.getUser("nobody@example.org"), null);
    assert.deepEqual(await b.listAliases(), [
      { source: "@example.org", targets: ["alice@example.org"] },
      { source: "sales@example.org", targets: ["alice@example.org", "Boss@partner.net"] },
    ]);
    assert.equal(await b.isLocalDomain("EXAMPLE.org"), true);
    assert.equal(await b.isLocalDomain("example.net"), false);
    assert.deepEqual(await b.resolveRecipient("sales@example.org"), {
      kind: "local",
      targets: [{ type: "mailbox", address: "alice@example.org" }, { type: "forward", address: "Boss@partner.net" }],
    });

    // Records never carry a hash.
    for (const u of await b.listUsers()) assert.deepEqual(Object.keys(u).sort(), ["address", "admin", "createdAt", "quota", "source"]);
  });

  test(`${kind.name}: AUTH through the store: verifyPlain and scramVerifier; setPassword replaces both`, async (t) => {
    const open = await kind.fresh(t);
    const s = await open();
    await s.addUser("alice@example.com", "pw-one");
    assert.equal(await s.verifyPlain("ALICE@example.com", "pw-one"), "alice@example.com");
    assert.equal(await s.verifyPlain("alice@example.com", "pw-two"), null);
    assert.equal(await s.verifyPlain("nobody@example.com", "pw-one"), null);
    const v = await s.scramVerifier("alice@example.com");
    assert.ok(v);
    assert.equal(v.user, "alice@example.com");
    assert.equal(v.iterations, 4096);
    const expected = deriveScramVerifier("pw-one", v.salt, 4096);
    assert.deepEqual(v.storedKey, expected.storedKey);
    assert.deepEqual(v.serverKey, expected.serverKey);
    assert.equal(await s.scramVerifier("nobody@example.com"), null);

    const other = await open(); // a second process's view
    assert.equal(await other.verifyPlain("alice@example.com", "pw-one"), "alice@example.com");
    await s.setPassword("Alice@example.com", "pw-two");
    assert.equal(await other.verifyPlain("alice@example.com", "pw-one"), null);
    assert.equal(await other.verifyPlain("alice@example.com", "pw-two"), "alice@example.com");
    const v2 = await other.scramVerifier("alice@example.com");
    assert.deepEqual(v2!.storedKey, deriveScramVerifier("pw-two", v2!.salt, 4096).storedKey);
  });

  test(`${kind.name}: config domains and users are always there and read-only`, async (t) => {
    const open = await kind.fresh(t);
    const s = await open({
      configUsers: [{ address: "Root@example.com", password: await hashPassword("rootpw"), scram: scramVerifier("rootpw", 4096), addresses: ["boss@example.com"] }],
    });
    assert.deepEqual(await s.listUsers(), [{ address: "Root@example.com", source: "config", admin: false }]);
    assert.equal(await s.verifyPlain("root@example.com", "rootpw"), "Root@example.com");
    assert.equal((await s.scramVerifier("root@EXAMPLE.com"))!.user, "Root@example.com");
    assert.deepEqual(await s.resolveRecipient("root@example.com"), { kind: "local", targets: [{ type: "mailbox", address: "Root@example.com" }] });
    assert.equal(s.mayUseSender("root@example.com", "boss@example.com"), true);

    await refused(s.removeDomain("example.com"), "config-defined", "domain example.com is defined in the config file (domains:); remove it there");
    await refused(s.addDomain("example.com"), "exists", /defined in the config file/);
    await refused(s.removeUser("root@example.com"), "config-defined", "user root@example.com is defined in the config file (users:); change it there");
    await refused(s.setPassword("root@example.com", "x"), "config-defined");
    await refused(s.addUser("ROOT@example.com", "x"), "exists", "user root@example.com already exists (defined in the config file)");
  });

  test(`${kind.name}: every bad input is refused with a clear AccountError`, async (t) => {
    const open = await kind.fresh(t);
    const s = await open();
    await refused(s.addDomain("not a domain"), "invalid-domain", "invalid domain name 'not a domain': expected a domain such as example.org");
    await refused(s.addDomain("example.com."), "exists");
    await refused(s.addUser("no-at-sign", "pw"), "invalid-address", /^invalid address 'no-at-sign': expected local@domain/);
    await refused(s.addUser("a b@example.com", "pw"), "invalid-address");
    await refused(s.addUser("bob@example.org", "pw"), "unknown-domain", "domain example.org is not a local domain; add it with: petrel domain add example.org");
    await refused(s.addUser("bob@example.com", ""), "invalid-password", "empty password refused");
    await refused(s.addUser("bob@example.com", "bad\u0000pw"), "invalid-password");
    await refused(s.addUser("bob@example.com", "pw", { quota: -1 }), "invalid-quota");
    await s.addUser("bob@example.com", "pw");
    await refused(s.addUser("Bob@Example.com", "pw2"), "exists", "user bob@example.com already exists");
    await refused(s.removeUser("carol@example.com"), "not-found", "no such user: carol@example.com");
    await refused(s.setPassword("carol@example.com", "pw"), "not-found");
    await refused(s.listUsers("example.org"), "unknown-domain");
    await refused(s.removeDomain("example.org"), "not-found", "domain example.org is not a local domain");

    // Aliases.
    await refused(s.addAlias("x@example.org", "bob@example.com"), "unknown-domain", /^domain example.org is not a local domain/);
    await refused(s.addAlias("x@example.com", "nobody@example.com"), "not-found", /nobody@example.com is neither a user nor an alias/);
    await refused(s.addAlias("x@example.com", "not-an-address"), "invalid-address", /invalid alias target 'not-an-address'/);
    await refused(s.addAlias("x@example.com", "@example.com"), "invalid-address");
    await refused(s.addAlias("@", "bob@example.com"), "invalid-address");
    await refused(s.addAlias("x@example.com", []), "invalid-address");
    await refused(s.addAlias("x@example.com", "x@example.com"), "alias-loop", "alias loop: x@example.com → x@example.com");
    await s.addAlias("a@example.com", "bob@example.com");
    await s.addAlias("b@example.com", "a@example.com");
    await refused(s.addAlias("a@example.com", "b@example.com"), "alias-loop", "alias loop: a@example.com → b@example.com → a@example.com");
    await refused(s.addAlias("a@example.com", "BOB@example.com"), "exists", "alias a@example.com → bob@example.com already exists");
    await refused(s.addAlias("@example.com", "nobody2@example.com"), "not-found");
    await refused(s.removeAlias("zzz@example.com"), "not-found", "no such alias: zzz@example.com");
    await refused(s.removeAlias("a@example.com", "carol@example.com"), "not-found", "alias a@example.com has no target carol@example.com");
    // Nothing of the refused changes was written.
    assert.deepEqual(await (await open()).listAliases(), [
      { source: "a@example.com", targets: ["bob@example.com"] },
      { source: "b@example.com", targets: ["a@example.com"] },
    ]);
  });

  test(`${kind.name}: alias nesting deeper than the bound is refused; a user may alias to itself plus a forward`, async (t) => {
    const open = await kind.fresh(t);
    const s = await open();
    await s.addUser("u@example.com", "pw");
    await s.addAlias("u@example.com", ["u@example.com", "u@elsewhere.net"]);
    assert.deepEqual(await s.resolveRecipient("u@example.com"), {
      kind: "local",
      targets: [{ type: "mailbox", address: "u@example.com" }, { type: "forward", address: "u@elsewhere.net" }],
    });
    await s.addAlias("a1@example.com", "u@example.com");
    for (let i = 2; i <= 9; i++) await s.addAlias(`a${i}@example.com`, `a${i - 1}@example.com`);
    // a9 → … → a1 → u (alias) is 10 aliases deep: still fine. One more is too deep.
    assert.equal((await s.resolveRecipient("a9@example.com")).kind, "local");
    await refused(s.addAlias("a10@example.com", "a9@example.com"), "alias-loop", /nest deeper than 10/);
  });

  test(`${kind.name}: removing a domain with users needs force, which removes its users, aliases and targets`, async (t) => {
    const open = await kind.fresh(t);
    const s = await open();
    await s.addDomain("example.org");
    await s.addUser("alice@example.org", "pw");
    await s.addUser("bob@example.com", "pw");
    await s.addAlias("list@example.org", "alice@example.org");
    await s.addAlias("team@example.com", ["bob@example.com", "alice@example.org"]);
    await s.addAlias("solo@example.com", "alice@example.org");
    await refused(s.removeDomain("example.org"), "domain-in-use", /^domain example.org still has 1 user and 1 alias; remove them first/);
    await s.removeDomain("example.org", { force: true });
    assert.deepEqual(await s.listDomains(), ["example.com"]);
    assert.deepEqual((await s.listUsers()).map((u) => u.address), ["bob@example.com"]);
    // The targets in the removed domain went too (they would otherwise have become forwards).
    assert.deepEqual(await s.listAliases(), [{ source: "team@example.com", targets: ["bob@example.com"] }]);
    // An empty domain goes without force.
    await s.addDomain("example.net");
    await s.removeDomain("example.net");
  });

  test(`${kind.name}: removeUser and removeAlias (one target, then the whole alias)`, async (t) => {
    const open = await kind.fresh(t);
    const s = await open();
    await s.addUser("a@example.com", "pw");
    await s.addUser("b@example.com", "pw");
    await s.addAlias("l@example.com", ["a@example.com", "b@example.com"]);
    await s.removeAlias("l@example.com", "A@example.com");
    assert.deepEqual(await s.listAliases(), [{ source: "l@example.com", targets: ["b@example.com"] }]);
    await s.removeAlias("l@example.com", "b@example.com"); // last target: the alias goes
    assert.deepEqual(await s.listAliases(), []);
    await s.addAlias("l@example.com", "a@example.com");
    await s.removeAlias("L@example.com");
    assert.deepEqual(await s.listAliases(), []);
    await s.removeUser("B@example.com");
    assert.deepEqual((await s.listUsers("example.com")).map((u) => u.address), ["a@example.com"]);
    assert.equal(await s.verifyPlain("b@example.com", "pw"), null);
  });

  test(`${kind.name}: mayUseSender: own address, own +tag, aliases reaching the user; not others' addresses`, async (t) => {
    const open = await kind.fresh(t);
    const s = await open({ subaddressSeparator: "+-" });
    await s.addUser("alice@example.com", "pw");
    await s.addUser("bob@example.com", "pw");
    await s.addAlias("sales@example.com", "alice@example.com");
    assert.equal(s.mayUseSender("alice@example.com", "alice@example.com"), true);
    assert.equal(s.mayUseSender("ALICE@example.com", "Alice+News@Example.com"), true);
    assert.equal(s.mayUseSender("alice@example.com", "alice-news@example.com"), true);
    assert.equal(s.mayUseSender("alice@example.com", "sales@example.com"), true);
    assert.equal(s.mayUseSender("bob@example.com", "sales@example.com"), false);
    assert.equal(s.mayUseSender("alice@example.com", "bob@example.com"), false);
    assert.equal(s.mayUseSender("nobody@example.com", "nobody@example.com"), false);
    assert.deepEqual(await s.resolveRecipient("alice-news@example.com"), { kind: "local", targets: [{ type: "mailbox", address: "alice@example.com" }] });
  });

}
